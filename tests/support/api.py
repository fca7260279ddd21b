"""The API as Lambda calls it: API Gateway HTTP API (payload format 2.0) events, a Lambda context,
and LambdaClient, which feeds them to the Mangum handler and reads its answer."""

from __future__ import annotations

import base64
import json
import time
import uuid

from mangum import Mangum

from app.core.settings import Settings
from tests.support.lambda_context import FakeLambdaContext

SOURCE_IP = "203.0.113.7"


def http_api_event(method: str, path: str, *, body: bytes | str | dict | None = None, query: str = "",
                   headers: dict[str, str] | None = None, source_ip: str = SOURCE_IP) -> dict:
    """An event as API Gateway's HTTP API sends it to a Lambda proxy integration (version 2.0)."""
    hdrs = {"host": "abc123.execute-api.eu-west-1.amazonaws.com", "user-agent": "curl/8.5.0",
            "x-forwarded-for": source_ip, "x-forwarded-port": "443", "x-forwarded-proto": "https",
            "accept": "*/*"}
    is_b64 = False
    if isinstance(body, dict):
        body = json.dumps(body)
        hdrs["content-type"] = "application/json"
    elif isinstance(body, bytes):
        body, is_b64 = base64.b64encode(body).decode(), True
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    now = time.time()
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": hdrs["host"],
            "domainPrefix": "abc123", "requestId": uuid.uuid4().hex, "routeKey": "$default",
            "stage": "$default", "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": hdrs["user-agent"]},
        },
        "isBase64Encoded": is_b64,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if body is not None:
        event["body"] = body
    return event


def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext("book-api", remaining_seconds=29, memory_limit_in_mb=512)


class LambdaResponse:
    def __init__(self, raw: dict):
        assert set(raw) >= {"statusCode", "headers", "body", "isBase64Encoded"}, raw
        self.raw = raw
        self.status_code = raw["statusCode"]
        self.headers = raw["headers"]
        body = raw["body"]
        self.content = base64.b64decode(body) if raw["isBase64Encoded"] else body.encode()
        self.text = self.content.decode()

    def json(self):
        return json.loads(self.content)


class LambdaClient:
    """Calls a Mangum handler the way the Lambda runtime does: handler(event, context)."""

    def __init__(self, handler_or_app):
        self.handler = handler_or_app if isinstance(handler_or_app, Mangum) else Mangum(handler_or_app,
                                                                                        lifespan="off")

    def request(self, method: str, path: str, **kw) -> LambdaResponse:
        return LambdaResponse(self.handler(http_api_event(method, path, **kw), lambda_context()))

    def get(self, path: str, **kw) -> LambdaResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> LambdaResponse:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw) -> LambdaResponse:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> LambdaResponse:
        return self.request("DELETE", path, **kw)


def clear_api_env(monkeypatch) -> None:
    """The outer environment must not leak into an app a test builds."""
    for name in Settings.variables():
        monkeypatch.delenv(name, raising=False)
