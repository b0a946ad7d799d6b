"""Everything ccorch keeps in PostgreSQL starts here: the server (embedded or given by
URL), the connection pool and the schema migrations that every other room's tables come
from.

This is its own room rather than part of ``ccorch/crm`` (as DESIGN.md first drew it)
because SIP registrations, CDRs, recordings and campaigns live in the same database and
migrate with the same runner.
"""
