# -*- coding: utf-8 -*-
"""Two schema snapshots taken at the same time (one in a forked child), sent back by difference only."""
from __future__ import annotations

import gc
import marshal
import os
import pickle

from ansible.module_utils.pgsafe_snapshot import KINDS, no_cyclic_gc


def _send(stream, tag, payload):
    stream.write(tag + len(payload).to_bytes(8, "big") + payload)
    stream.flush()


def _receive(stream):
    head = stream.read(9)
    if len(head) < 9:
        return None, None
    size = int.from_bytes(head[1:], "big")
    payload = stream.read(size)
    if len(payload) < size:
        return None, None
    return head[:1], payload


def _is_snapshot(value):
    return isinstance(value, dict) and "format_version" in value and all(kind in value for kind in KINDS)


def _encoded(snapshot, kind):
    """{key: marshal bytes} of one kind's objects, in the snapshot's order."""
    dumps = marshal.dumps
    return {key: dumps(obj) for key, obj in snapshot[kind].items()}


def _digests(encoded):
    """{key: (hash, length)} of encoded objects: a 64-bit SipHash and the size of each one's bytes.

    Both processes share one hash seed (the child is forked), so equal bytes give equal digests; two
    different objects of the same key would have to collide in 64 bits at the same length to be taken
    for equal.
    """
    return {key: (hash(data), len(data)) for key, data in encoded.items()}


def read_snapshot_pair(left_call, right_call):
    """Take two snapshots at the same time: ``[left, right]``; a call's exception is returned in its place.

    ``right_call`` runs in a forked child (reading a schema is CPU work on both ends; threads would
    share one core).  Rebuilding a whole snapshot from a byte stream costs about as much as taking it,
    so both processes marshal each of their objects, the child sends a digest of each (``_digests``),
    the parent asks for the objects whose digest differs from its own object's, and takes its own
    (equal) objects for the rest.  The right snapshot returned is equal, value for value, to the one
    the child took; objects equal on both sides are shared, so callers must not modify them.  Without
    fork (or for results that are not snapshots) the results are sent whole.
    """
    if not hasattr(os, "fork"):
        outcomes = []
        for call in (left_call, right_call):
            try:
                outcomes.append(call())
            except Exception as exc:  # noqa: BLE001 - returned in its place
                outcomes.append(exc)
        return outcomes
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's code, never run its atexit handlers
        status = 0
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            with os.fdopen(to_parent_w, "wb") as out, os.fdopen(to_child_r, "rb") as requests:
                _serve_snapshot(right_call, out, requests)
        except BaseException:  # noqa: BLE001
            status = 1
        finally:
            os._exit(status)
    os.close(to_child_r)
    os.close(to_parent_w)
    right = None
    try:
        # The pipes close before the wait whatever happens here (even KeyboardInterrupt): a child
        # blocked writing to the parent then fails and exits instead of waiting forever.
        with os.fdopen(to_child_w, "wb") as requests, os.fdopen(to_parent_r, "rb") as replies:
            try:
                left = left_call()
            except Exception as exc:  # noqa: BLE001 - returned in its place
                left = exc
            try:
                right = _fetch_snapshot(left, requests, replies)
            except OSError:  # the child went away mid-exchange
                right = None
    finally:
        _, status = os.waitpid(pid, 0)
    if right is None:
        right = RuntimeError("reading the right side died without a result (wait status {0})".format(status))
    return [left, right]


def _serve_snapshot(call, out, requests):
    try:
        result = call()
    except BaseException as exc:  # noqa: BLE001 - sent to the parent
        try:
            payload = pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - unpicklable: keep its type and message
            payload = pickle.dumps(RuntimeError("{0}: {1}".format(type(exc).__name__, exc)))
        _send(out, b"E", payload)
        return
    if not _is_snapshot(result):
        _send(out, b"M", marshal.dumps(result))
        return
    gc.disable()  # acyclic plain data, and this process ends after the exchange
    rest = {key: value for key, value in result.items() if key not in KINDS}
    encoded = {kind: _encoded(result, kind) for kind in KINDS}
    _send(out, b"D", marshal.dumps((rest, {kind: _digests(encoded[kind]) for kind in KINDS})))
    tag, wanted = _receive(requests)
    if tag != b"W":
        return
    _send(out, b"O", marshal.dumps({kind: {key: encoded[kind][key] for key in keys}
                                    for kind, keys in marshal.loads(wanted).items()}))  # noqa: S302


def _fetch_snapshot(left, requests, replies):
    own = left if _is_snapshot(left) else None
    with no_cyclic_gc():
        return _exchange(own, requests, replies)


def _exchange(own, requests, replies):
    # Digest our own side while the child digests its own: then compare.
    mine = {kind: _digests(_encoded(own, kind)) for kind in KINDS} if own is not None else {}
    tag, payload = _receive(replies)
    if tag == b"E":
        try:
            return pickle.loads(payload)  # noqa: S301 - from our own forked child
        except Exception as exc:  # noqa: BLE001
            return RuntimeError("reading the right side failed and its error could not be read: {0}".format(exc))
    if tag == b"M":
        return marshal.loads(payload)  # noqa: S302 - from our own forked child
    if tag != b"D":
        return None
    rest, digests = marshal.loads(payload)  # noqa: S302 - from our own forked child
    wanted = {}
    for kind in KINDS:
        ours = mine.get(kind, {})
        differing = [key for key, digest in digests[kind].items() if ours.get(key) != digest]
        if differing:
            wanted[kind] = differing
    _send(requests, b"W", marshal.dumps(wanted))
    tag, payload = _receive(replies)
    if tag != b"O":
        return None
    received = marshal.loads(payload)  # noqa: S302 - from our own forked child
    right = dict(rest)
    loads = marshal.loads
    for kind in KINDS:
        theirs = received.get(kind, {})
        right[kind] = {key: loads(theirs[key]) if key in theirs else own[kind][key]  # noqa: S302 - our child's
                       for key in digests[kind]}
    return right
