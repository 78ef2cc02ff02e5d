# SPDX-License-Identifier: Apache-2.0
"""Adversarial group F (tests/adversarial/README.md) against a real nucleus-tool-proxy:
path escapes, symlinks, prefix confusion, /proc and /dev, odd paths, blocked names, hard links.
Each case checks the error kind, that nothing happened, and that a deny audit event was sent."""
import os

import pytest

from helpers.proxyrun import (agent_ids, configure, err_kind, fix_issue_policy, last_audit,  # noqa: F401
                              proxy, proxy_bin)


def denied(pp, op, args, kind):
    r = pp.ch.request(op, args)
    assert err_kind(r) == kind, r
    ev = last_audit(pp)  # an unparseable request is audited as op "invalid"
    assert ev["decision"] == "deny" and ev["kind"] == kind and ev["op"] in (op, "invalid")
    return r


def agent_policy(proxy_bin, agent_ids):
    return fix_issue_policy(proxy_bin, *agent_ids, extra_allowed=["ln", "mkdir"])


@pytest.mark.parametrize("path", ["../../etc/shadow", "/etc/passwd", "{ws}/../etc/hostname", "..", "a/../../x",
                                  "{ws}/../../etc/passwd"])
def test_f1_escapes(proxy, path):
    configure(proxy)
    p = path.format(ws=proxy.ws)
    for op, args in [("read", {"path": p}), ("write", {"path": p, "content": "x"}), ("list", {"path": p}),
                     ("edit", {"path": p, "old": "a", "new": "b"})]:
        denied(proxy, op, args, "sandbox_escape")


def test_f2_symlink_to_root_created_by_command(proxy_bin, agent_ids, proxy):
    configure(proxy, policy=agent_policy(proxy_bin, agent_ids))
    r = proxy.ch.request("run", {"argv": ["ln", "-s", "/", "rootlink"]})
    assert r["exit_code"] == 0, r
    assert os.readlink(os.path.join(proxy.ws, "rootlink")) == "/"
    denied(proxy, "read", {"path": "rootlink/etc/passwd"}, "sandbox_escape")
    denied(proxy, "write", {"path": "rootlink/tmp/pwned", "content": "x"}, "sandbox_escape")
    denied(proxy, "list", {"path": "rootlink/etc"}, "sandbox_escape")
    denied(proxy, "read", {"path": "rootlink"}, "sandbox_escape")
    # Relative climbing symlink as well.
    proxy.ch.request("run", {"argv": ["ln", "-s", "../..", "up"]})
    denied(proxy, "read", {"path": "up/etc/passwd"}, "sandbox_escape")
    # Searches never follow links out of the workspace.
    r = proxy.ch.request("glob", {"pattern": "**/passwd"})
    assert r["matches"] == []
    r = proxy.ch.request("grep", {"pattern": "root:"})
    assert r["matches"] == []


def test_f3_write_new_file_through_symlinked_dir(proxy_bin, agent_ids, proxy, tmp_path):
    configure(proxy, policy=agent_policy(proxy_bin, agent_ids))
    elsewhere = os.path.join(proxy.base, "elsewhere")
    os.mkdir(elsewhere)
    os.chmod(elsewhere, 0o777)
    r = proxy.ch.request("run", {"argv": ["ln", "-s", elsewhere, "out"]})
    assert r["exit_code"] == 0, r
    denied(proxy, "write", {"path": "out/new.txt", "content": "x"}, "sandbox_escape")
    denied(proxy, "write", {"path": "out/sub/new.txt", "content": "x", "create_dirs": True}, "sandbox_escape")
    assert os.listdir(elsewhere) == []


def test_f4_prefix_confusion(proxy):
    configure(proxy)
    for suffix in ["2", "_evil", "-x"]:
        sib = proxy.ws + suffix
        os.mkdir(sib)
        with open(os.path.join(sib, "secret"), "w") as f:
            f.write("s")
        denied(proxy, "read", {"path": sib + "/secret"}, "sandbox_escape")
        denied(proxy, "write", {"path": sib + "/new", "content": "x"}, "sandbox_escape")
        denied(proxy, "list", {"path": sib}, "sandbox_escape")
        assert os.listdir(sib) == ["secret"]
    # The real root with and without a trailing slash is fine.
    assert proxy.ch.request("list", {"path": proxy.ws})["path"] == "."
    assert proxy.ch.request("list", {"path": proxy.ws + "/"})["path"] == "."


@pytest.mark.parametrize("path", ["/proc/self/root/etc/passwd", "/proc/1/cwd/etc/passwd", "/proc/self/environ",
                                  "/dev/vport0p1", "/dev/virtio-ports/org.nucleus.channel.0", "/dev/null"])
def test_f5_proc_and_dev(proxy, path):
    configure(proxy)
    denied(proxy, "read", {"path": path}, "sandbox_escape")


def test_f5_magic_link_inside_workspace(proxy):
    configure(proxy)
    os.symlink("/proc/self/root", os.path.join(proxy.ws, "magic"))
    os.symlink("/proc/self/cwd", os.path.join(proxy.ws, "magic2"))
    denied(proxy, "read", {"path": "magic/etc/passwd"}, "sandbox_escape")
    denied(proxy, "read", {"path": "magic2/etc/passwd"}, "sandbox_escape")


def test_f6_odd_paths(proxy):
    configure(proxy)
    proxy.put("t.txt", "T")
    os.makedirs(os.path.join(proxy.ws, "d"), exist_ok=True)
    denied(proxy, "read", {"path": "t.txt\u0000../../etc/passwd"}, "invalid_request")
    denied(proxy, "read", {"path": "a/" * 5000}, "invalid_request")
    denied(proxy, "read", {"path": "x" * 10000}, "invalid_request")
    denied(proxy, "read", {"path": ""}, "invalid_request")
    assert proxy.ch.request("read", {"path": proxy.ws + "//t.txt"})["content"] == "T"
    assert proxy.ch.request("read", {"path": "d//..//t.txt"})["content"] == "T"
    denied(proxy, "read", {"path": "//t.txt"}, "sandbox_escape")  # POSIX: absolute /t.txt
    assert proxy.ch.request("read", {"path": "./d/../t.txt"})["content"] == "T"
    assert proxy.ch.request("list", {"path": "d/."})["path"] == "d"
    assert proxy.ch.request("list", {"path": "d//"})["path"] == "d"
    # Trailing "/." on a file is normalized away; the answer names the real file.
    assert proxy.ch.request("read", {"path": "t.txt/."})["path"] == "t.txt"


@pytest.mark.parametrize("path", [".env", "config/.env.local", "keys/server.pem", ".ssh/id_ed25519", ".git/config",
                                  "sub/.git/hooks/pre-commit"])
def test_f7_blocked_names(proxy, path):
    configure(proxy)
    proxy.put(path, "sensitive")
    denied(proxy, "read", {"path": path}, "path_denied")
    denied(proxy, "write", {"path": path, "content": "x"}, "path_denied")
    denied(proxy, "edit", {"path": path, "old": "sensitive", "new": "x"}, "path_denied")
    assert open(os.path.join(proxy.ws, path)).read() == "sensitive"
    # Reached through an in-workspace symlink with an innocent name: judged on the real path.
    os.symlink(path, os.path.join(proxy.ws, "innocent"))
    denied(proxy, "read", {"path": "innocent"}, "path_denied")


# Every spelling of a blocked path is that path: repeated slashes (a leading "//" too), trailing
# slashes, "./" components, ".." through a real directory. The answer is path_denied, never
# sandbox_escape (the path is inside the workspace) and never the file's content.
SPELLINGS = ["{p}", "./{p}", ".//{p}", "{ws}/{p}", "/{ws}//{p}", "//{ws}//{p}", "{ws}/./{p}", "{ws}//./{p}",
             "d/../{p}", "d//..//{p}", "{ws}/d/../{p}", "/{ws}/d/..//{p}"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_f7_blocked_name_spellings(proxy, spelling):
    configure(proxy)
    proxy.put(".env", "sensitive")
    os.makedirs(os.path.join(proxy.ws, "d"), exist_ok=True)
    path = spelling.format(ws=proxy.ws, p=".env")
    denied(proxy, "read", {"path": path}, "path_denied")
    denied(proxy, "write", {"path": path, "content": "x"}, "path_denied")
    denied(proxy, "edit", {"path": path, "old": "sensitive", "new": "x"}, "path_denied")
    assert open(os.path.join(proxy.ws, ".env")).read() == "sensitive"
    # The same spellings of an allowed file read it (control), a trailing slash on a directory too.
    proxy.put("ok.txt", "fine")
    assert proxy.ch.request("read", {"path": spelling.format(ws=proxy.ws, p="ok.txt")})["content"] == "fine"
    assert proxy.ch.request("list", {"path": spelling.format(ws=proxy.ws, p="d/")})["path"] == "d"


def test_f6_dotdot_follows_the_kernel(proxy):
    """'..' after a symlink is the parent of the link's target (as for every program), not the
    lexical parent: ln -> a/b, so ln/../x.txt is a/x.txt."""
    configure(proxy)
    proxy.put("a/b/inner.txt", "inner")
    proxy.put("a/x.txt", "ax")
    proxy.put("x.txt", "top")
    os.symlink("a/b", os.path.join(proxy.ws, "ln"))
    r = proxy.ch.request("read", {"path": "ln/../x.txt"})
    assert r["content"] == "ax" and r["path"] == "a/x.txt", r
    denied(proxy, "read", {"path": "ln/../../../../etc/passwd"}, "sandbox_escape")


def test_f7_no_over_blocking(proxy):
    configure(proxy)
    for p in ["src/tokenizer.rs", "docs/keys.md", "environment.txt", "src/password_strength.rs"]:
        proxy.put(p, "ok")
        assert proxy.ch.request("read", {"path": p})["content"] == "ok", p


def test_f8_hardlink_to_outside_file(proxy):
    configure(proxy)
    outside = os.path.join(proxy.base, "outside-secret")
    with open(outside, "w") as f:
        f.write("host secret")
    os.link(outside, os.path.join(proxy.ws, "hl"))  # same filesystem: possible here
    denied(proxy, "read", {"path": "hl"}, "path_denied")
    denied(proxy, "write", {"path": "hl", "content": "overwritten"}, "path_denied")
    denied(proxy, "edit", {"path": "hl", "old": "host", "new": "x"}, "path_denied")
    assert open(outside).read() == "host secret"
    r = proxy.ch.request("grep", {"pattern": "host secret"})
    assert r["matches"] == []
