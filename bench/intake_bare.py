"""The bare baseline of bench/intake.py: a FastAPI endpoint that reads the body and answers 202.

Served by bench/intake.py as `python -m uvicorn bench.intake_bare:app` with the options that
`opsgate api` passes to uvicorn (one process, loop and http "auto", log level warning, access
log off), so the only difference between the two sides is the work the endpoint does.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI(title="bare intake baseline")


@app.post("/webhooks/zendesk")
async def zendesk_webhook(request: Request) -> JSONResponse:
    """Read the body and accept it: no verification, no storage, no publish."""
    await request.body()
    return JSONResponse({"ok": True}, status_code=202)
