"""The admin dashboard and JSON API over the journal."""
