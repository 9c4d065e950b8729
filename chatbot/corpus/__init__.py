"""Stage 1: real text (subtitles, novels, dialogue sets) into conversations in SQLite."""
