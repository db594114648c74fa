"""Echo marks: only a holder of the signing key makes a record one its stream task skips."""

from __future__ import annotations

from eventflow.kafka.signing import DECIDED, Signer

KEY = b"k" * 32
VALUE = b'{"type": "x"}'


def test_an_echo_is_known_by_its_mark_and_still_signed() -> None:
    signer = Signer(KEY)
    headers = signer.echo_headers("eventflow.datasets", VALUE)
    assert signer.decided("eventflow.datasets", VALUE, headers)
    assert signer.verify("eventflow.datasets", VALUE, headers), "readers still check it"
    assert not signer.decided("eventflow.datasets", VALUE, signer.headers("x", VALUE))


def test_a_mark_made_without_the_key_or_for_other_bytes_is_not_an_echo() -> None:
    signer = Signer(KEY)
    forged = Signer(b"o" * 32).echo_headers("eventflow.datasets", VALUE)
    assert not signer.decided("eventflow.datasets", VALUE, forged)
    real = signer.echo_headers("eventflow.datasets", VALUE)
    assert not signer.decided("eventflow.pipeline-inputs", VALUE, real), "bound to its topic"
    assert not signer.decided("eventflow.datasets", VALUE + b" ", real)
    assert not signer.decided("eventflow.datasets", VALUE, [(DECIDED, b"x" * 32)])
    # The mark is not the signature: a signed record is not an echo.
    assert not signer.decided("eventflow.datasets", VALUE, [(DECIDED, real[0][1])])
    assert not Signer(None).decided("eventflow.datasets", VALUE, real)
