"""The e-mail channel: the center's mailbox becomes interactions and cases; replies go out
threaded in them."""
