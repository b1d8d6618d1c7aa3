"""The reviewer console: server-rendered pages under /ui of the API."""
