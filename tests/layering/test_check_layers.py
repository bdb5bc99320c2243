#!/usr/bin/env python3
"""Tests of the layering check: it passes the real tree and fails each kind of violation."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "check_layers.py")
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(root):
    p = subprocess.run([sys.executable, CHECK, root], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stderr


def tree(files):
    root = tempfile.mkdtemp(prefix="layers-")
    for path, includes in files.items():
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(root, path), "w") as f:
            f.write("/* test file */\n" + "".join(f'#include "{h}"\n' for h in includes))
    return root


CLEAN = {
    "storage/store.h": [],
    "storage/store.c": ["storage/store.h"],
    "consensus/raft_node.h": ["storage/store.h"],
    "replication/fsm.h": ["storage/store.h", "tandem.pb-c.h"],
    "replication/domain/jobs.c": ["replication/fsm.h"],
    "replication/commands.h": ["replication/domain/jobs.h"],
    "replication/domain/jobs.h": ["replication/fsm.h"],
    "node/node.h": ["replication/fsm.h", "node/http/server.h"],
    "node/http/server.h": [],
    "node/http/park.c": ["node/http/server.h", "node/node.h"],
}


def test_real_tree_passes():
    code, err = run(ROOT)
    assert code == 0, err


def test_clean_tree_passes():
    code, err = run(tree(CLEAN))
    assert code == 0, err


def test_storage_including_node_fails():
    files = dict(CLEAN)
    files["storage/store.c"] = ["storage/store.h", "node/node.h"]
    code, err = run(tree(files))
    assert code == 1
    assert "storage/store.c: includes node/node.h" in err, err


def test_consensus_including_replication_fails():
    files = dict(CLEAN)
    files["consensus/raft_node.c"] = ["replication/fsm.h"]
    code, err = run(tree(files))
    assert code == 1 and "consensus/raft_node.c: includes replication/fsm.h" in err, err


def test_sibling_folders_in_a_loop_fail():
    files = dict(CLEAN)
    files["node/api/router.c"] = ["node/bcp/drill.h"]
    files["node/bcp/drill.h"] = []
    files["node/bcp/drill.c"] = ["node/api/api.h"]
    files["node/api/api.h"] = []
    code, err = run(tree(files))
    assert code == 1 and "node/api <-> node/bcp" in err, err


def test_files_in_a_loop_fail():
    files = dict(CLEAN)
    files["replication/fsm.c"] = ["replication/fsm.h", "replication/commands.h"]
    files["replication/commands.h"] = ["replication/fsm.h"]
    files["replication/fsm.h"] = ["replication/commands.h"]
    code, err = run(tree(files))
    assert code == 1 and "replication/commands <-> replication/fsm" in err, err


def main():
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
    passed = failed = 0
    for t in tests:
        try:
            t()
            passed += 1
            print(f"ok {t.__name__}")
        except AssertionError as e:
            failed += 1
            print(f"FAIL {t.__name__}: {e}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
