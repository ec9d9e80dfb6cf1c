"""Lab sessions: a student's private sandbox for one lab (filled by a later issue)."""
