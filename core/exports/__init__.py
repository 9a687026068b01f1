"""Exports: CSV/XLSX files, streamed or written by an ExportWorkflow."""
