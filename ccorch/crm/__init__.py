"""The CRM on PostgreSQL: customers and identification, self-service accounts, users,
roles and sessions, the audit log, and its REST API (``ccorch.crm.api``)."""
