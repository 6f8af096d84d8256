"""``ServeConfig``: what the server serves and the limits it enforces."""

from __future__ import annotations

from dataclasses import dataclass

from doctorsun.errors import DoctorSunError


@dataclass
class ServeConfig:
    """What the server serves and the limits it enforces."""

    model_name: str = "doctorsun"
    """Model id clients send in ``model`` (``GET /v1/models`` lists it); other names get a 404."""
    api_key: str | None = None
    """When set, ``/v1/*`` requires ``Authorization: Bearer <api_key>`` (and the web UI asks for it)."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest accepted request body (images travel base64 inside it); larger gets a 413."""
    max_image_pixels: int = 25_000_000
    """Largest accepted image (width x height of one frame)."""
    max_images: int = 8
    """Most images in one request."""
    max_tokens_limit: int = 2048
    """Largest ``max_tokens`` a request may ask for."""
    default_max_tokens: int = 512
    """``max_tokens`` when a request gives none (and for the web UI)."""
    max_batch_size: int = 8
    """Most requests answered by one batched generation."""
    batch_wait_ms: float = 10.0
    """How long the batcher keeps collecting after the first request of a batch."""
    max_pending: int = 64
    """Most requests waiting or being answered at once; one more gets a 429 with ``Retry-After``."""
    max_request_pixels: int = 50_000_000
    """Most decoded pixels of all the images of one request together."""
    max_server_pixels: int = 200_000_000
    """Most decoded pixels held by all waiting and running requests together (a request alone always fits);
    more gets a 429 with ``Retry-After``."""
    body_timeout_s: float = 60.0
    """A request body that has not arrived whole by then gets a 408 (a slow sender holds no worker)."""

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_image_pixels",
            "max_images",
            "max_tokens_limit",
            "default_max_tokens",
            "max_batch_size",
            "max_pending",
            "max_request_pixels",
            "max_server_pixels",
        ):
            if getattr(self, name) < 1:
                raise DoctorSunError(f"serve {name} must be >= 1, not {getattr(self, name)}")
        if self.default_max_tokens > self.max_tokens_limit:
            raise DoctorSunError(
                f"default_max_tokens {self.default_max_tokens} is over max_tokens_limit "
                f"{self.max_tokens_limit}"
            )
        if self.batch_wait_ms < 0:
            raise DoctorSunError(f"batch_wait_ms must be >= 0, not {self.batch_wait_ms}")
        if self.api_key is not None and not self.api_key.strip():
            raise DoctorSunError("api_key must not be empty")
