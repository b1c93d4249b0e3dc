"""Tables, figures and Markdown rendered from typed results (rrec_core.results); nothing here writes files."""
