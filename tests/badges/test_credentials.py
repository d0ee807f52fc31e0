"""Verifiable badges: an earned badge as an Open Badges 3.0 credential (VC-JWT, RS256), checked
with an independent JOSE library (joserfc) against the keys the server publishes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import jwt as pyjwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from server.badges import credentials
from server.badges.models import BadgeSigningKey, MemberBadge
from server.context import Context
from server.db import Database
from server.redis import RedisHandle
from tests.support import unique

EARNED_AT = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


async def earn(ctx: Context, member_id: str, badge_id: str, level: int = 1, round_: int = 1) -> str:
    """A badge as the engine records it: one member_badges row (its id is the credential id)."""
    row_id = uuid.uuid4().hex
    async with ctx.db.transaction() as session:
        session.add(
            MemberBadge(
                id=row_id,
                member_id=member_id,
                badge_id=badge_id,
                level=level,
                round=round_,
                earned_at=EARNED_AT,
                source="criteria",
                idempotency_key=f"badge:{badge_id}:{round_}:{level}",
            )
        )
    return row_id


def path_of(url: str) -> str:
    return urlsplit(url).path


def b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
async def shopper(http, as_brand, as_member, ctx):
    """A member named Ana who earned Shopper bronze and silver: her credential, as served."""
    member_id = unique("m")
    r = await http.put(f"/v1/members/{member_id}", json={"display_name": "Ana"}, headers=as_brand)
    assert r.status_code == 201, r.text
    await earn(ctx, member_id, "shopper", level=1)
    silver = await earn(ctx, member_id, "shopper", level=2)
    r = await http.get("/v1/badges/shopper/credential", headers=as_member(member_id))
    assert r.status_code == 200, r.text
    return member_id, silver, r.json()


async def jwks(http) -> KeySet:
    r = await http.get("/v1/badges/keys")
    assert r.status_code == 200
    return KeySet.import_key_set(r.json())


async def test_credential_is_an_open_badge_that_verifies_with_the_published_keys(
    http, ctx, as_member, shopper
):
    member_id, silver, out = shopper
    base = ctx.settings.public_base_url
    assert out["credential_id"] == silver  # the highest level earned
    assert out["verify_url"] == f"{base}/credentials/{silver}"
    assert out["verify_json_url"] == f"{base}/v1/credentials/{silver}"
    assert out["issuer_url"] == f"{base}/v1/badges/issuer" and out["keys_url"] == f"{base}/v1/badges/keys"

    vc = out["credential"]
    assert vc["@context"] == [
        "https://www.w3.org/ns/credentials/v2",
        "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
    ]
    assert vc["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert vc["id"] == out["verify_json_url"]
    assert vc["issuer"] == {"id": out["issuer_url"], "type": ["Profile"], "name": "Engage", "url": base}
    assert vc["validFrom"] == "2026-03-14T09:26:53Z"
    subject = vc["credentialSubject"]
    assert subject["type"] == ["AchievementSubject"] and subject["id"].startswith("urn:uuid:")
    achievement = subject["achievement"]
    assert achievement["id"] == f"{base}/v1/badges/shopper#level-2"
    badge = ctx.content.get("badges").get("shopper")
    assert achievement["type"] == ["Achievement"]
    assert achievement["name"] == f"{badge.name} ({badge.level_name(2)})" == "Shopper (silver)"
    assert achievement["description"] == badge.description
    assert achievement["criteria"] == {"narrative": badge.narrative(ctx.content.get("events"), 2)}
    assert badge.narrative(ctx.content.get("events"), 2) == "Reach 10 orders."
    assert achievement["image"] == {"id": f"{base}/v1/badges/shopper/image.svg?level=2", "type": "Image"}

    # The member is named by a salted hash only, which checks out for whoever knows their id.
    [identity] = subject["identifier"]
    assert identity["type"] == "IdentityObject" and identity["hashed"] is True
    digest = hashlib.sha256((member_id + identity["salt"]).encode()).hexdigest()
    assert identity["identityHash"] == f"sha256${digest}"
    assert member_id not in json.dumps(vc) and member_id not in out["jwt"]
    assert member_id not in json.dumps(b64url_json(out["jwt"].split(".")[1]))

    # The JWT proof format: {alg, kid, typ} and the credential as the payload with its claims.
    token = jose_jwt.decode(out["jwt"], await jwks(http), algorithms=["RS256"])
    assert token.header == {"alg": "RS256", "kid": token.header["kid"], "typ": "JWT"}
    assert token.header["kid"].startswith(out["keys_url"] + "#")
    claims = token.claims
    assert claims["iss"] == vc["issuer"]["id"] and claims["jti"] == vc["id"]
    assert claims["sub"] == subject["id"]
    assert claims["nbf"] == int(datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC).timestamp())
    assert {k: v for k, v in claims.items() if k not in ("iss", "jti", "nbf", "sub")} == vc
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": out["issuer_url"]},
        jti={"essential": True, "value": vc["id"]},
        sub={"essential": True},
        nbf={"essential": True},
    ).validate(claims)

    # The kid dereferences: the JWKS at its address holds that key.
    keys = (await http.get(path_of(token.header["kid"]))).json()["keys"]
    assert token.header["kid"] in [k["kid"] for k in keys]

    # The same credential is handed out the same way each time.
    again = (await http.get("/v1/badges/shopper/credential", headers=as_member(member_id))).json()
    assert again["jwt"] == out["jwt"]


async def test_tampering_fails_verification(http, ctx, shopper):
    _, _, out = shopper
    keys = await jwks(http)
    header, payload, signature = out["jwt"].split(".")
    claims = b64url_json(payload)

    changed = []
    for change in (
        lambda c: c["credentialSubject"]["achievement"].update(name="Shopper (gold)"),
        lambda c: c.update(validFrom="2020-01-01T00:00:00Z", nbf=1577836800),
        lambda c: c.update(sub="urn:uuid:00000000-0000-4000-8000-000000000000"),
    ):
        forged = json.loads(json.dumps(claims))
        change(forged)
        changed.append(f"{header}.{b64url(forged)}.{signature}")
    # One character in the middle of the signature (the last one may only carry padding bits).
    i = len(signature) // 2
    changed.append(
        f"{header}.{payload}.{signature[:i]}{'A' if signature[i] != 'A' else 'B'}{signature[i + 1 :]}"
    )

    for token in changed:
        with pytest.raises(BadSignatureError):
            jose_jwt.decode(token, keys, algorithms=["RS256"])
        assert await credentials.verify_credential(ctx, token) is None
    assert await credentials.verify_credential(ctx, out["jwt"]) is not None


async def test_a_signed_document_must_match_the_stored_award(ctx, shopper):
    """Our own key signing a document that disagrees with the row (a higher level) is refused,
    as is a credential signed by a key that is not ours under our key's name."""
    _, _, out = shopper
    key = await credentials.signing_key(ctx)
    claims = pyjwt.decode(out["jwt"], options={"verify_signature": False})
    claims["credentialSubject"]["achievement"]["id"] = claims["credentialSubject"]["achievement"][
        "id"
    ].replace("level-2", "level-3")
    kid = pyjwt.get_unverified_header(out["jwt"])["kid"]
    upgraded = pyjwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": kid})
    assert await credentials.verify_credential(ctx, upgraded) is None

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    original = pyjwt.decode(out["jwt"], options={"verify_signature": False})
    assert (
        await credentials.verify_credential(
            ctx, pyjwt.encode(original, stranger, algorithm="RS256", headers={"kid": kid})
        )
        is None
    )
    assert await credentials.verify_credential(ctx, "not.a.jwt") is None


async def test_public_verification_links(http, shopper):
    member_id, silver, out = shopper
    r = await http.get(path_of(out["verify_json_url"]))
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["valid"] is True
    assert (v["credential_id"], v["badge_id"], v["level"], v["level_name"]) == (
        silver,
        "shopper",
        2,
        "silver",
    )
    assert v["earned_at"].startswith("2026-03-14T09:26:53")
    assert v["credential"] == out["credential"] and v["jwt"] == out["jwt"]
    assert v["issuer"]["id"] == out["issuer_url"]

    page = await http.get(path_of(out["verify_url"]))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for text in ("Shopper (silver)", "Ana", "14 March 2026", "Signature verified", out["verify_json_url"]):
        assert text in page.text, text
    assert member_id not in page.text

    missing = uuid.uuid4().hex
    r = await http.get(f"/v1/credentials/{missing}")
    assert r.status_code == 404 and r.json()["code"] == "credential_not_found"
    assert (await http.get("/v1/credentials/not-an-id")).status_code == 404
    page = await http.get(f"/credentials/{missing}")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "Badge not found" in page.text


async def test_a_member_without_a_display_name_is_a_member(http, ctx, as_member):
    member_id = unique("m")
    assert (await http.get("/v1/me", headers=as_member(member_id))).status_code == 200  # a bare member
    credential_id = await earn(ctx, member_id, "big-spender")
    page = await http.get(f"/credentials/{credential_id}")
    assert page.status_code == 200 and "a member" in page.text and "Big spender" in page.text


async def test_no_credential_for_a_badge_not_earned(http, ctx, as_member):
    member_id = unique("m")
    await earn(ctx, member_id, "shopper")
    cases = [
        ("big-spender", "badge_not_earned"),
        ("no-such-badge", "badge_not_found"),
        ("night-owl", "badge_not_found"),  # hidden, and not earned: not even its existence is told
    ]
    for badge_id, code in cases:
        r = await http.get(f"/v1/badges/{badge_id}/credential", headers=as_member(member_id))
        assert r.status_code == 404 and r.json()["code"] == code, (badge_id, r.text)
    r = await http.get("/v1/badges/shopper/credential")
    assert r.status_code == 401


async def test_issuer_profile_and_keys_are_stable(http, ctx):
    first = await http.get("/v1/badges/issuer")
    assert first.status_code == 200 and "max-age=300" in first.headers["cache-control"]
    profile = first.json()
    assert profile == {
        "@context": credentials.CONTEXTS,
        "id": f"{ctx.settings.public_base_url}/v1/badges/issuer",
        "type": ["Profile"],
        "name": "Engage",
        "url": ctx.settings.public_base_url,
    }
    assert (await http.get(path_of(profile["id"]))).json() == profile

    keys = (await http.get("/v1/badges/keys")).json()
    assert (await http.get("/v1/badges/keys")).json() == keys
    [key] = keys["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert key["kid"].startswith(f"{ctx.settings.public_base_url}/v1/badges/keys#")
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)  # never the private half


async def test_concurrent_first_uses_create_one_key(own_settings):
    """Instances on one database that all need the key at once share the one that is kept."""
    instances = [
        Context(settings=own_settings, db=Database(own_settings), redis=RedisHandle(own_settings))
        for _ in range(4)
    ]
    try:
        keys = await asyncio.gather(*(credentials.signing_key(c) for c in instances))
        assert len({(k.kid, json.dumps(k.public_jwk, sort_keys=True)) for k in keys}) == 1
        async with instances[0].db.session() as session:
            rows = (await session.execute(sa.select(BadgeSigningKey))).scalars().all()
        assert len(rows) == 1 and rows[0].public_jwk == keys[0].public_jwk and rows[0].active
        # A process that starts later loads the same key and publishes it alone.
        late = Context(settings=own_settings, db=Database(own_settings), redis=RedisHandle(own_settings))
        instances.append(late)
        assert (await credentials.signing_key(late)).public_jwk == keys[0].public_jwk
        assert [k["n"] for k in await credentials.public_keys(late)] == [keys[0].public_jwk["n"]]
    finally:
        for c in instances:
            await c.db.dispose()
