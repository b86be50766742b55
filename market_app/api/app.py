"""``market serve``: the HTTP API (FastAPI) and the live dashboard at ``/``.

It reads only from the chain and the content store (:mod:`market_app.api.reads`)
and writes only through :class:`market.chain.contract.MarketContract`, the client the
CLI uses.  Errors are JSON ``{"error", "message"}`` with a sentence a person can
act on.  A server started with an owner key file may create tasks
(``POST /api/tasks``); the key stays in this process and is never echoed.
Every endpoint that signs a transaction requires ``Authorization: Bearer <token>``
(the server's API token, compared in constant time); without it the answer is 401
and nothing is signed.  Read endpoints are open.
By default it listens on 127.0.0.1 only and answers only requests addressed to
a loopback host name (no DNS-rebinding from a web page).

Endpoints (the OpenAPI spec is at ``/openapi.json``)::

    GET  /api/status[?since=BLOCK]                     chain, contract, block, task count, events since
    GET  /api/tasks                                    tasks, newest first
    POST /api/tasks                                    create a task (server key file, bearer token)
    GET  /api/tasks/{task_id}                          one task, its spec and trainers
    GET  /api/tasks/{task_id}/overview                 detail + rounds + payouts, one chain state
    GET  /api/tasks/{task_id}/rounds                   every opened round
    GET  /api/tasks/{task_id}/rounds/{round}           one round
    GET  /api/tasks/{task_id}/rounds/{round}/submissions
    GET  /api/tasks/{task_id}/rounds/{round}/receipt   the round receipt, from the store
    GET  /api/tasks/{task_id}/contributions            basis points per trainer per round
    GET  /api/tasks/{task_id}/payouts                  credited, owed and withdrawn amounts
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.exceptions import ValidationError as EthValidationError
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from market.chain.contract import MAX_ROUNDS, MarketContract
from market.errors import (
    ChainError,
    CidMismatchError,
    ConfigError,
    ContractRevert,
    DataError,
    InsufficientFunds,
    MarketError,
    NodeUnreachable,
    NotFoundError,
    StoreError,
    UnknownTaskError,
)
from market.store import ContentStore
from market_app.api.models import (
    MAX_TASK_ID,
    ChainStatus,
    ContributionMatrix,
    CreatedTask,
    CreateTaskRequest,
    ErrorBody,
    Payouts,
    RoundList,
    RoundView,
    SubmissionList,
    TaskDetail,
    TaskList,
    TaskOverview,
    reward_wei,
    stake_wei,
)
from market_app.api.reads import MarketReader
from owner.task import TaskRequest, create_task, default_panel, task_request

log = logging.getLogger("market_app.api.app")
DASHBOARD = Path(__file__).resolve().parent / "dashboard"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]

_ERR = {"model": ErrorBody}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {**_ERR, "description": "no such task (or round, or receipt)"},
    422: {**_ERR, "description": "invalid path or query parameter"},
    502: {**_ERR, "description": "the store or the chain's events are inconsistent (bytes not matching their CID, "
                                "events not matching the on-chain digest)"},
    503: {**_ERR, "description": "the chain node cannot be reached"},
}


class CreationDisabled(MarketError):
    """The server holds no owner key."""


class Unauthorized(MarketError):
    """A spending request without the server's API token (or with a wrong one)."""


#: how a client proves it may spend the server's money (declared in the OpenAPI spec)
BEARER = HTTPBearer(auto_error=False, scheme_name="apiToken",
                    description="the API token `market serve` printed at start (or $MARKET_API_TOKEN)")


def token_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison of two tokens (bytes, so any header text compares without an error)."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def _error(status: int, code: str, message: str, detail: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=code, message=message, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _describe(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    parts, detail = [], []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])}" if loc and loc[0] in ("path", "query") else ".".join(loc)
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
        detail.append({"loc": loc, "msg": msg, "type": str(e.get("type", ""))})
    return "; ".join(parts) or "invalid request", detail


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = _describe(list(exc.errors()))
        return _error(422, "invalid_request", message, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, "not_found", f"no such endpoint {req.url.path}; the API is described at /openapi.json")
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            return _error(400, "invalid_json", "the request body is not valid JSON: send a JSON object with "
                          "Content-Type: application/json (see the schema at /openapi.json)")
        if exc.status_code == 405:
            return _error(405, "method_not_allowed", f"{req.method} is not allowed on {req.url.path}; see /openapi.json")
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(UnknownTaskError)
    async def _unknown(_req: Request, exc: UnknownTaskError) -> JSONResponse:
        return _error(404, "unknown_task", str(exc))

    @app.exception_handler(NotFoundError)
    async def _missing(_req: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(exc))

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_req: Request, exc: Unauthorized) -> JSONResponse:
        return _error(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(CreationDisabled)
    async def _disabled(_req: Request, exc: CreationDisabled) -> JSONResponse:
        return _error(403, "creation_disabled", str(exc))

    @app.exception_handler(MarketError)
    async def _market(req: Request, exc: MarketError) -> JSONResponse:
        if isinstance(exc, ContractRevert):
            return _error(409, "contract_refused", f"the contract refused: {exc}")
        if isinstance(exc, InsufficientFunds):
            return _error(409, "insufficient_funds", str(exc))
        if isinstance(exc, ConfigError):
            return _error(422, "invalid_request", str(exc))
        if isinstance(exc, (CidMismatchError, DataError)):
            return _error(502, "store_corrupt", str(exc))
        if isinstance(exc, StoreError):
            return _error(502, "store_unavailable", f"{exc} (check --store / --store-dir / --ipfs-api)")
        if isinstance(exc, NodeUnreachable):
            return _error(503, "chain_unavailable", f"{exc} (is the node at the server's --rpc URL running?)")
        if isinstance(exc, ChainError):
            if req.method == "POST":
                return _error(409, "transaction_failed", f"the chain refused the transaction: {exc}")
            return _error(502, "chain_inconsistent", str(exc))
        return _error(400, "market_error", str(exc))

    @app.exception_handler(Exception)
    async def _crash(_req: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug, logged
        log.exception("unhandled error")
        return _error(500, "internal_error", f"internal error ({type(exc).__name__}); see the server's log")


def create_app(
    contract: MarketContract,
    store: ContentStore,
    *,
    creator: LocalAccount | None = None,
    api_token: str | None = None,
    trusted_hosts: list[str] | None = None,
) -> FastAPI:
    """The API + dashboard app. ``creator`` signs ``POST /api/tasks``; without it creation answers 403.
    A server with a ``creator`` needs an ``api_token``: spending requests must carry it as
    ``Authorization: Bearer <api_token>`` or are answered 401 before their body is validated or anything signed."""
    if creator is not None and not api_token:
        raise ValueError("a server that holds a key needs an api_token to guard the endpoints that spend with it")
    reader = MarketReader(contract, store)
    app = FastAPI(
        title="Proof-of-Contribution market",
        version="1",
        description="Tasks, rounds, submissions, contributions, payouts and receipts of a ContributionMarket "
        "contract, read from the chain and the content store. Amounts of wei are decimal strings.",
        docs_url=None,  # the interactive docs load scripts from a CDN; nothing here comes from the internet
        redoc_url=None,
    )
    app.state.reader = reader
    if trusted_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts)
    _install_error_handlers(app)
    creator_address = str(creator.address) if creator else None

    def spender(credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> None:
        """Admit a request to an endpoint that signs with the server's key only with the API token.
        Runs before the body is validated (only a body that is not JSON at all is answered 400 first)."""
        if creator is None or api_token is None:
            return  # nothing to spend with: the endpoint answers creation_disabled
        if credentials is None:
            raise Unauthorized("this endpoint spends the server's money: send the API token `market serve` printed "
                               "at start (or $MARKET_API_TOKEN) as the header `Authorization: Bearer <token>`")
        if not token_matches(credentials.credentials, api_token):
            raise Unauthorized("wrong API token: send the one `market serve` printed at start "
                               "(or $MARKET_API_TOKEN) as `Authorization: Bearer <token>`")

    TaskId = PathParam(ge=1, le=MAX_TASK_ID, description="task id (1, 2, …)")
    Round = PathParam(ge=0, lt=MAX_ROUNDS, description="round number, from 0")

    @app.get("/api/status", response_model=ChainStatus, tags=["chain"],
             responses={422: READ_ERRORS[422], 503: READ_ERRORS[503]})
    def status(
        since: int | None = Query(None, ge=0, le=MAX_TASK_ID, description="count the contract's events after this block"),
    ) -> ChainStatus:
        """The chain and contract the server reads. Poll it with ``?since=<last block seen>``: refetch what
        you show when ``events_since`` > 0 (every state change of the contract emits an event)."""
        return reader.status(creator_address, since)

    @app.get("/api/tasks", response_model=TaskList, tags=["tasks"], responses={422: READ_ERRORS[422], 503: READ_ERRORS[503]})
    def list_tasks(
        offset: int = Query(0, ge=0, le=MAX_TASK_ID, description="skip this many tasks"),
        limit: int = Query(50, ge=1, le=500, description="at most this many tasks"),
    ) -> TaskList:
        """Tasks on the contract, newest first."""
        return reader.list_tasks(offset, limit)

    @app.post(
        "/api/tasks", response_model=CreatedTask, status_code=201, tags=["tasks"],
        dependencies=[Depends(spender)],
        responses={400: {**_ERR, "description": "the body is not JSON"},
                   401: {**_ERR, "description": "no API token, or a wrong one (`Authorization: Bearer <token>`)"},
                   403: {**_ERR, "description": "the server was started without an owner key file"},
                   409: {**_ERR, "description": "the contract refused the task"},
                   422: READ_ERRORS[422], 502: READ_ERRORS[502], 503: READ_ERRORS[503]},
    )
    def create_task(body: CreateTaskRequest) -> CreatedTask:
        """Publish the spec (and its initial model) to the store and escrow the reward, signed by the server's key.
        Requires the server's API token as ``Authorization: Bearer <token>``."""
        if creator is None:
            raise CreationDisabled(
                "this server holds no owner key, so it cannot create tasks: restart it with "
                "`market serve --key-file OWNER.key` or create the task with `market task create`"
            )
        return _create(contract, store, creator, body)

    @app.get("/api/tasks/{task_id}", response_model=TaskDetail, tags=["tasks"], responses=READ_ERRORS)
    def task_detail(task_id: int = TaskId) -> TaskDetail:
        """One task: state, amounts, deadlines, trainers and its spec."""
        return reader.task_detail(task_id)

    @app.get("/api/tasks/{task_id}/rounds", response_model=RoundList, tags=["rounds"], responses=READ_ERRORS)
    def rounds(task_id: int = TaskId) -> RoundList:
        """Every round opened so far: validation accuracy, outliers, rejections, contributions, basis points, CIDs."""
        return reader.rounds(task_id)

    @app.get("/api/tasks/{task_id}/rounds/{round}", response_model=RoundView, tags=["rounds"], responses=READ_ERRORS)
    def round_detail(task_id: int = TaskId, round: int = Round) -> RoundView:  # noqa: A002 - the API's word
        """One round."""
        return reader.round(task_id, round)

    @app.get("/api/tasks/{task_id}/rounds/{round}/submissions", response_model=SubmissionList, tags=["rounds"],
             responses=READ_ERRORS)
    def submissions(task_id: int = TaskId, round: int = Round) -> SubmissionList:  # noqa: A002
        """A round's committed updates in submission order (events checked against the on-chain digest)."""
        return reader.submissions(task_id, round)

    @app.get("/api/tasks/{task_id}/rounds/{round}/receipt", tags=["rounds"], responses=READ_ERRORS)
    def receipt(task_id: int = TaskId, round: int = Round) -> dict[str, Any]:  # noqa: A002
        """The round receipt the aggregator posted, fetched from the store by its CID and re-hashed."""
        return reader.receipt(task_id, round)

    @app.get("/api/tasks/{task_id}/overview", response_model=TaskOverview, tags=["tasks"], responses=READ_ERRORS)
    def overview(task_id: int = TaskId) -> TaskOverview:
        """Detail, rounds and payouts of one task from one chain state (what the dashboard draws)."""
        return reader.overview(task_id)

    @app.get("/api/tasks/{task_id}/contributions", response_model=ContributionMatrix, tags=["payouts"],
             responses=READ_ERRORS)
    def contributions(task_id: int = TaskId) -> ContributionMatrix:
        """Basis points and contribution shares per trainer per settled round."""
        return reader.contributions(task_id)

    @app.get("/api/tasks/{task_id}/payouts", response_model=Payouts, tags=["payouts"], responses=READ_ERRORS)
    def payouts(task_id: int = TaskId) -> Payouts:
        """Credited, owed and withdrawn amounts per trainer; escrow and refunds of the task."""
        return reader.payouts(task_id)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/dashboard", StaticFiles(directory=DASHBOARD), name="dashboard")
    return app


def _create(contract: MarketContract, store: ContentStore, owner: LocalAccount, body: CreateTaskRequest) -> CreatedTask:
    spec = body.spec or TaskRequest.model_fields["spec"].get_default(call_default_factory=True)
    drawable = contract.registry.drawable_count(owner.address)  # the owner is never drawn for its own task
    panel, note = default_panel(body.panel, spec.proof.system != "none", drawable, body.result_window, body.backup)
    request = task_request(
        spec=spec,
        validation_commitment=bytes.fromhex(body.validation_commitment[2:]),
        rounds=body.rounds, reward_wei=reward_wei(body.reward_eth), submit_window=body.submit_window,
        reveal_window=body.reveal_window, result_window=body.result_window, max_trainers=body.max_trainers,
        stake_wei=stake_wei(body.stake_eth), backup=body.backup, panel=panel, quorum=body.quorum, fee_bps=body.fee_bps,
        empty_rounds_to_reclaim=body.empty_rounds_to_reclaim,
    )
    try:
        created = create_task(contract, store, owner, request)
    except EthValidationError as exc:  # the in-process chain's way of refusing a transaction (Anvil's is mapped)
        raise InsufficientFunds(f"the chain refused the transaction: {exc}") from None
    return CreatedTask(
        task_id=created.task_id, owner=str(owner.address), spec_cid=created.spec_cid, reward_wei=str(request.reward_wei),
        tx_hash=created.tx_hash, gas_used=created.gas_used, panel=panel, note=note,
    )


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def serve(
    contract: MarketContract, store: ContentStore, *, host: str = "127.0.0.1", port: int = 8000,
    creator: LocalAccount | None = None, api_token: str | None = None, log_level: str = "warning",
) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    trusted = [*LOOPBACK_HOSTS, host] if is_loopback(host) else None
    app = create_app(contract, store, creator=creator, api_token=api_token, trusted_hosts=trusted)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
