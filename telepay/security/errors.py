"""The one exception hierarchy for rejected webhook authentication.

Owns the error types every verifier in ``telepay.security`` raises, so the API layer can map a
single base class to a JSON error body. Each class carries a short, stable ``code`` meant for
that body and for metrics; the codes are part of our contract with callers, so they never change
once published. Messages never contain secrets, expected digests or body contents: they are
shown to whoever sent the request.
"""


class SignatureError(Exception):
    """A request's authentication could not be accepted."""

    code = "signature_invalid"


class MissingSignature(SignatureError):
    """A required signature or timestamp header is absent or empty."""

    code = "signature_missing"


class MalformedSignature(SignatureError):
    """A signature or timestamp header is present but not in the expected shape."""

    code = "signature_malformed"


class StaleSignature(SignatureError):
    """The signed timestamp is older than the tolerance allows."""

    code = "signature_stale"


class FutureSignature(SignatureError):
    """The signed timestamp is further ahead than the tolerance allows."""

    code = "signature_future"


class BadSignature(SignatureError):
    """The signature is well formed but does not match the body."""

    code = "signature_mismatch"


class MalformedBody(SignatureError):
    """The body cannot be canonicalised, so there is nothing the signature could cover.

    It sits in this hierarchy because an IPN signature is computed over a re-serialisation of
    the body: a body we cannot parse is a body whose signature we cannot check.
    """

    code = "body_malformed"
