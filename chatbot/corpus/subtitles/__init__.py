"""Subtitle cues (SRT, WebVTT, ASS) into conversations: parsing helpers, cleaning, segmenting."""
