"""Request dependencies: a session per request, and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy.orm import Session

from app.core import db
from app.identity import apikeys


def get_session() -> Iterator[Session]:
    """One session per request, closed afterwards."""
    with db.session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_principal(
    session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> apikeys.Principal:
    """The caller named by the bearer key (401 without a valid one)."""
    return apikeys.authenticate(session, authorization)


PrincipalDep = Annotated[apikeys.Principal, Depends(get_principal)]
