"""Is a sweep's storage shared? Network filesystems, remote storage, a Ray cluster.

SQLite locks its database with POSIX file locks, which NFS, SMB and FUSE-mounted buckets do
not honour reliably: two processes (or two pods) writing one `optuna.db` there can corrupt it.
So a sweep whose experiment lives on such storage, or which runs on a cluster, must keep its
study in a database server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

MOUNTS = Path("/proc/mounts")
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "lustre", "gpfs", "ceph", "cephfs",
    "glusterfs", "beegfs", "afs", "ocfs2", "gfs2", "pvfs2", "orangefs", "9p",
})
# FUSE filesystems that are local; every other `fuse.*` (sshfs, s3fs, gcsfuse, goofys,
# rclone, juicefs, ...) is taken as network storage.
LOCAL_FUSE = frozenset({"fuse.fuse-overlayfs", "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal",
                        "fuse.squashfuse", "fuse.appimagefuse"})


def filesystem_type(path: str | Path, mounts_text: str | None = None) -> str | None:
    """The type of the filesystem that holds `path` (or would hold it, once created).

    Args:
        path: Any path; the nearest existing ancestor decides.
        mounts_text: The mount table in /proc/mounts form; default: this machine's.

    Returns:
        The type (`ext4`, `nfs4`, `fuse.s3fs`, ...), or None without a mount table.
    """
    if mounts_text is None:
        try:
            mounts_text = MOUNTS.read_text()
        except OSError:
            return None  # not Linux: nothing to go by
    # Symlinks resolved on the part that exists; the rest (not created yet) kept as written.
    target, tail = Path(path).absolute(), []
    while not target.exists() and target != target.parent:
        tail.insert(0, target.name)
        target = target.parent
    resolved = str(target.resolve().joinpath(*tail))
    best: tuple[int, str] | None = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces and tabs in mount points as octal.
        point = fields[1].encode().decode("unicode_escape")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        # The last of equal mount points wins: it is the one mounted on top.
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])
    return best[1] if best else None


def is_network_filesystem(fstype: str | None) -> bool:
    """Whether a filesystem type is network (or object-store) storage."""
    if not fstype:
        return False
    return fstype in NETWORK_FILESYSTEMS or (fstype.startswith("fuse.")
                                             and fstype not in LOCAL_FUSE)


def shared_storage_reason(storage_path: str, experiment: Path,
                          environ: Mapping[str, str] | None = None,
                          mounts_text: str | None = None) -> str | None:
    """Why a sweep's experiment is shared storage, or None on a lone machine's disk.

    Args:
        storage_path: The sweep's `storage_path` (a folder or a URI such as `s3://...`).
        experiment: The local experiment folder.
        environ: The environment (default: this process's); `RAY_ADDRESS` means a cluster.
        mounts_text: The mount table (default: /proc/mounts).
    """
    environ = os.environ if environ is None else environ
    if environ.get("RAY_ADDRESS"):
        return f"RAY_ADDRESS is set ({environ['RAY_ADDRESS']}): a cluster run"
    if "://" in storage_path:
        return f"storage_path {storage_path} is remote storage"
    fstype = filesystem_type(experiment, mounts_text)
    if is_network_filesystem(fstype):
        return f"storage_path {storage_path} is on a network filesystem ({fstype})"
    return None


def on_local_disk(path: str | Path) -> bool:
    """Whether `path` is (or would be) on this machine's own disk, not a network filesystem."""
    return not is_network_filesystem(filesystem_type(path))
