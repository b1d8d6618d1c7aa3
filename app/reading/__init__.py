"""Reading a customer's words: request language, stated amounts and their roles.
Shared by the rules tier and the soft check."""
