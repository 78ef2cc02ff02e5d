# SPDX-License-Identifier: Apache-2.0
"""Mint Nucleus approval tokens in Python (format: docs/approvals.md), with python3-nacl."""
import base64
import hashlib
import json
import os
import time

import nacl.signing


def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def args_sha256(args):
    """Hex SHA-256 of the canonical JSON of args (for a command: the argv list)."""
    return hashlib.sha256(canonical(args).encode()).hexdigest()


def signing_key_from_hex(sk_hex):
    """libsodium 64-byte secret key (seed || public key) as hex -> nacl SigningKey."""
    return nacl.signing.SigningKey(bytes.fromhex(sk_hex.strip())[:32])


def generate_keypair():
    """(signing_key, secret_key_hex_128, public_key_hex_64) in the secret-file formats."""
    sk = nacl.signing.SigningKey.generate()
    return sk, (bytes(sk) + bytes(sk.verify_key)).hex(), bytes(sk.verify_key).hex()


def mint(signing_key, pod, op, argv=None, uses=1, ttl=300, exp=None, nonce=None):
    payload = {"v": 1, "pod": pod, "op": op, "uses": uses,
               "exp": exp if exp is not None else int(time.time()) + ttl,
               "nonce": nonce or os.urandom(16).hex()}
    if argv is not None:
        payload["args_sha256"] = args_sha256(argv)
    head = "nat1." + _b64(canonical(payload).encode())
    return head + "." + _b64(signing_key.sign(head.encode()).signature)
