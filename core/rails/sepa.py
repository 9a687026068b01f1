"""The SEPA scheme's reach: which IBAN countries a SEPA rail may pay, and which BIC countries
are consistent with an IBAN's country (EPC list of SEPA countries and territories)."""

from __future__ import annotations

# IBAN country codes of the SEPA scheme: the EU 27, the EEA (IS, LI, NO), CH, GB, and the
# microstates and newer members (AD, MC, SM, VA, AL, MD, ME, MK). Territories that use
# another country's IBAN (Åland: FI, French overseas departments: FR, Gibraltar: GI, Channel
# Islands and Isle of Man: GB) are covered through that code.
SEPA_IBAN_COUNTRIES: frozenset[str] = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
        "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
        "IS", "LI", "NO", "CH", "GB", "GI", "AD", "MC", "SM", "VA", "AL", "MD", "ME", "MK",
    }
)

# BIC country codes (BIC characters 5-6) that may serve an IBAN of another country code: the
# scheme's territories whose banks carry their own ISO code in the BIC.
BIC_COUNTRY_EXCEPTIONS: dict[str, frozenset[str]] = {
    "FR": frozenset({"GP", "GF", "MQ", "RE", "YT", "PM", "BL", "MF", "MC"}),
    "FI": frozenset({"AX"}),
    "GB": frozenset({"GG", "JE", "IM"}),
    "MC": frozenset({"FR"}),
}


def sepa_problem(iban: str, bic: str | None) -> str | None:
    """Why a SEPA rail cannot pay this IBAN/BIC pair, or None when it can."""
    country = iban[:2].upper()
    if country not in SEPA_IBAN_COUNTRIES:
        return f"IBAN country {country} is not in the SEPA scheme; use a wire payout"
    if bic:
        bic_country = bic[4:6].upper()
        if bic_country != country and bic_country not in BIC_COUNTRY_EXCEPTIONS.get(country, frozenset()):
            return f"BIC {bic} is for country {bic_country}, the IBAN for {country}"
    return None
