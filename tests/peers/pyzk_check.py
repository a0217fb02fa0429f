#!/usr/bin/env python3
"""Black-box conformance peer: drives a ZK-protocol device with pyzk and prints what it read.

pyzk (PyPI `pyzk`, GPL-2.0) is an independent client; it runs only as this separate process and
is never vendored. The edge-agent test suite starts `device-sim zk`, runs this script against it
over TCP and UDP and compares every value printed here with what the emulator holds.

Exit status 3 means pyzk is not installed (the caller reports the check as SKIPPED).
"""
import argparse
import base64
import json
import sys

try:
    import zk
    from zk import ZK
except ImportError:
    print("pyzk is not installed: pip install pyzk", file=sys.stderr)
    sys.exit(3)


def version():
    try:
        from importlib.metadata import version as dist_version
        return dist_version("pyzk")
    except Exception:  # metadata missing when run from a source checkout
        return getattr(zk, "__version__", "unknown")


def user_json(user):
    return {
        "uid": user.uid,
        "user_id": user.user_id,
        "name": user.name,
        "privilege": user.privilege,
        "password": user.password,
        "card": user.card,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--udp", action="store_true", help="force UDP")
    parser.add_argument("--password", type=int, default=0, help="comm key")
    parser.add_argument("--read-only", action="store_true",
                        help="only read (sizes, users, attendance, time); write no user")
    parser.add_argument("--templates", action="store_true",
                        help="also read every fingerprint template (get_templates)")
    parser.add_argument("--set-uid", type=int)
    parser.add_argument("--set-user-id")
    parser.add_argument("--set-name")
    parser.add_argument("--set-card", type=int, default=0)
    args = parser.parse_args()
    if not args.read_only and None in (args.set_uid, args.set_user_id, args.set_name):
        parser.error("--set-uid, --set-user-id and --set-name are required unless --read-only")

    # ommit_ping: pyzk otherwise shells out to `ping`, which containers often lack.
    device = ZK(args.host, port=args.port, timeout=10, password=args.password,
                force_udp=args.udp, ommit_ping=True)
    conn = device.connect()
    try:
        conn.disable_device()
        conn.read_sizes()
        sizes = {"users": conn.users, "records": conn.records, "fingers": conn.fingers,
                 "users_cap": conn.users_cap, "rec_cap": conn.rec_cap}
        users = [user_json(u) for u in conn.get_users()]
        attendance = [{
            "uid": a.uid,
            "user_id": a.user_id,
            "timestamp": a.timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
            "status": a.status,
            "punch": a.punch,
        } for a in conn.get_attendance()]
        templates = None
        if args.templates:
            templates = [{
                "uid": t.uid,
                "fid": t.fid,
                "valid": t.valid,
                "template": base64.b64encode(t.template).decode("ascii"),
            } for t in conn.get_templates()]
        device_time = conn.get_time().strftime("%Y-%m-%dT%H:%M:%S")
        after = None
        if not args.read_only:
            conn.set_user(uid=args.set_uid, name=args.set_name, privilege=0, password="",
                          user_id=args.set_user_id, card=args.set_card)
            after = [user_json(u) for u in conn.get_users()]
        conn.enable_device()
    finally:
        conn.disconnect()
    json.dump({
        "client": "pyzk",
        "version": version(),
        "transport": "udp" if args.udp else "tcp",
        "sizes": sizes,
        "users": users,
        "attendance": attendance,
        "templates": templates,
        "time": device_time,
        "users_after_set": after,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
