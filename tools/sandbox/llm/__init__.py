"""The sandbox's OpenAI-compatible model server."""
