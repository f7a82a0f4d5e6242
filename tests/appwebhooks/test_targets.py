"""Where webhooks may go: https and public addresses only, outside development, checked when
an endpoint is made and by the resolver each attempt connects with."""

from __future__ import annotations

import pytest

from appwebhooks.errors import RefusedAddress, UnacceptableEndpointUrl
from appwebhooks.signing import new_secret, seal, secret_text, signature, unseal
from appwebhooks.targets import PublicOnlyResolver, check_endpoint_url
from wallet.kms import KeyRing, KeyUnwrapError, LocalKeyEncryptionKey


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://[::ffff:192.168.0.1]/x",
        "https://localhost/x",
        "https://user:pass@hooks.example.com/x",
        "https:///x",
    ],
)
def test_outside_development_only_https_to_a_public_address_is_accepted(url: str) -> None:
    with pytest.raises(UnacceptableEndpointUrl):
        check_endpoint_url(url, allow_private=False)


def test_development_allows_http_to_a_local_receiver() -> None:
    assert check_endpoint_url("https://hooks.example.com/x", allow_private=False)
    assert check_endpoint_url("http://127.0.0.1:8080/hooks", allow_private=True)
    with pytest.raises(UnacceptableEndpointUrl):
        check_endpoint_url("ftp://127.0.0.1/x", allow_private=True)


async def test_the_resolver_refuses_a_name_that_resolves_inside_the_network() -> None:
    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(RefusedAddress):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()


def test_a_secret_is_sealed_to_its_endpoint_and_signs_as_standard_webhooks_does() -> None:
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    keyring = KeyRing(LocalKeyEncryptionKey.from_base64(LocalKeyEncryptionKey.generate_base64()))
    key = new_secret()
    sealed, kek_id = seal(key, endpoint_id="endpoint-a", keyring=keyring)
    assert key not in sealed
    assert unseal(sealed, kek_id=kek_id, endpoint_id="endpoint-a", keyring=keyring) == key
    with pytest.raises(KeyUnwrapError):  # moved to another endpoint's row, it does not open
        unseal(sealed, kek_id=kek_id, endpoint_id="endpoint-b", keyring=keyring)
    ours = signature(key, message_id="msg_1", timestamp=1_700_000_000, body=b'{"a":1}')
    theirs = Webhook(secret_text(key)).sign(
        "msg_1", datetime.fromtimestamp(1_700_000_000, UTC), b'{"a":1}'
    )
    assert ours == theirs
