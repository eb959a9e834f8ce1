"""Everything that persists: the database, its tables and migrations, hot statements, files."""
