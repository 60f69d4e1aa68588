"""Recover the engine's response-log key digest from a request as the server saw it."""

from __future__ import annotations

from selfinstruct.engine import request_digest
from selfinstruct.records import SamplingParams
from selfinstruct.testing.server import RecordedRequest


def digest_of(request: RecordedRequest) -> str:
    """Return the digest part of the log key the engine gave this request.

    Tests and benchmarks use it to check that no request already logged is asked again.
    """
    body = request.body
    stop = body.get("stop") or []
    params = SamplingParams(
        temperature=body["temperature"],
        top_p=body["top_p"],
        max_tokens=body["max_tokens"],
        presence_penalty=body["presence_penalty"],
        frequency_penalty=body["frequency_penalty"],
        stop=tuple([stop] if isinstance(stop, str) else stop),
        seed=body.get("seed"),
    )
    return request_digest(request.prompt, params)
