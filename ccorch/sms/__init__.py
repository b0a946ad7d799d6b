"""Text messages to customers through the carrier's SMSC over SMPP 3.4 (``gateway``), and
who may send them over HTTP (``api``)."""
