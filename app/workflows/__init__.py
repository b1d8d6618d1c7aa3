"""The workflows opsgate runs, one module each (what it takes, reads, plans, is checked
against), and the registry that collects them for intake, planning and the soft check."""
