"""Payer country on transactions (issue 20, countries as a breakdown dimension)

Revision ID: 0022_transaction_country
Revises: 0021_w19_bulk_rollups

`transactions.payer_country`: ISO 3166-1 alpha-2, NULL when the provider gives none (PayShack
never does) or gives something that is not an assigned code. New Vima syncs fill it from the
record's `payer_country` (core/transactions/countries.py); existing rows are backfilled here
from the stored raw record by the same rule (two ASCII letters, case-insensitive, an assigned
code). Only rows that get a country are updated, so the rollup trigger sees as few as possible
(an UPDATE that changes no rollup dimension leaves the rollups' sums unchanged).

An index on (occurred_at, payer_country) serves the breakdown by country, which is read from
`transactions` (the rollups have no country dimension).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0022_transaction_country"
down_revision: Union[str, Sequence[str], None] = "0021_w19_bulk_rollups"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# a copy of core.transactions.countries.ISO_ALPHA2 as of this migration (migrations stand alone)
_CODES = (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS "
    "BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE "
    "EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM "
    "HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC "
    "LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA "
    "NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW "
    "SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO "
    "TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW "
).split()

BACKFILL_SQL = """
UPDATE transactions SET payer_country = upper(raw ->> 'payer_country')
 WHERE raw ->> 'payer_country' ~ '^[A-Za-z]{2}$'
   AND upper(raw ->> 'payer_country') = ANY(:codes)
   AND payer_country IS DISTINCT FROM upper(raw ->> 'payer_country')
"""


def upgrade() -> None:
    op.add_column("transactions", sa.Column("payer_country", sa.String(2), nullable=True))
    op.get_bind().execute(sa.text(BACKFILL_SQL).bindparams(sa.bindparam("codes", type_=sa.ARRAY(sa.Text))),
                          {"codes": _CODES})
    op.create_index("ix_transactions_occurred_country", "transactions", ["occurred_at", "payer_country"])


def downgrade() -> None:
    op.drop_index("ix_transactions_occurred_country", table_name="transactions")
    op.drop_column("transactions", "payer_country")
