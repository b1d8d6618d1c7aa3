"""KPIs, in the terminal and as HTML."""
