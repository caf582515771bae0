#!/usr/bin/env python3
"""Writes the committed seed inputs of the runtime's fuzz targets into corpus/<target>/.

corpus/image_archive/saved-tiny.tar is not made here: it is what `shoal image save tiny:1`
wrote for a two-file root filesystem imported with `shoal image import DIR tiny:1 --change
'CMD ["/bin/sh"]'`. Run this from anywhere: python3 runtime/fuzz/make_seeds.py
"""

import gzip
import hashlib
import io
import json
import os
import tarfile

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def entry(tar, name, data=b"", kind=tarfile.REGTYPE, link="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def archive(entries, fmt=tarfile.USTAR_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for e in entries:
            entry(tar, *e)
    return out.getvalue()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write(target, name, data):
    path = os.path.join(CORPUS, target, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def config(diff_ids, labels=None):
    return json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
    }).encode()


# Layers.
basic = archive([
    ("etc/", b"", tarfile.DIRTYPE, "", 0o755),
    ("etc/hostname", b"box\n"),
    ("bin/", b"", tarfile.DIRTYPE, "", 0o755),
    ("bin/tool", b"#!/bin/sh\necho hi\n", tarfile.REGTYPE, "", 0o4755),
    ("bin/sh", b"", tarfile.SYMTYPE, "tool"),
    ("bin/tool2", b"", tarfile.LNKTYPE, "bin/tool"),
])
whiteouts = archive([
    ("etc/", b"", tarfile.DIRTYPE, "", 0o755),
    ("etc/.wh.hostname", b""),
    ("var/", b"", tarfile.DIRTYPE, "", 0o755),
    ("var/.wh..wh..opq", b""),
    ("var/new", b"replaced\n"),
])
hostile = archive([
    ("etc/", b"", tarfile.DIRTYPE, "", 0o755),
    ("link", b"", tarfile.SYMTYPE, "/etc"),
    ("link/passwd", b"pwned\n"),
    ("../escape", b"x"),
    ("hard", b"", tarfile.LNKTYPE, "../../etc/passwd"),
    (".wh...", b""),
])
write("layer_tar", "basic.tar", basic)
write("layer_tar", "whiteouts.tar", whiteouts)
write("layer_tar", "hostile.tar", hostile)
write("layer_tar", "long-names.tar", archive([("d/" + "n" * 150, b"long\n"), ("l", b"", tarfile.SYMTYPE, "t" * 120)], tarfile.GNU_FORMAT))

# Image archives.
cfg = config([sha256(basic)], {"tier": "web"})
cfg_name = sha256(cfg) + ".json"
classic = archive([
    ("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": ["seed:1"], "Layers": ["0123abcd/layer.tar"]}]).encode()),
    (cfg_name, cfg),
    ("0123abcd/", b"", tarfile.DIRTYPE, "", 0o755),
    ("0123abcd/layer.tar", basic),
])
write("image_archive", "docker-classic.tar", classic)
write("image_archive", "docker-classic.tar.gz", gzip.compress(classic, mtime=0))

layers = [basic, whiteouts]
oci_cfg = config([sha256(l) for l in layers])
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sha256(oci_cfg), "size": len(oci_cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + sha256(l), "size": len(l)} for l in layers],
}).encode()
index = json.dumps({
    "schemaVersion": 2,
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + sha256(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": "seed/oci:2", "org.opencontainers.image.ref.name": "2"},
    }],
}).encode()
blobs = [oci_cfg, manifest] + layers
write("image_archive", "oci-whiteouts.tar", archive(
    [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
    + [("blobs/sha256/" + sha256(b), b) for b in blobs]))
write("image_archive", "escaping-paths.tar", archive([
    ("manifest.json", json.dumps([{"Config": "../../../../important.json", "RepoTags": ["evil:1"], "Layers": ["/etc/important"]}]).encode()),
]))

# References and --change instructions.
for n, text in enumerate(["busybox", "docker.io/library/web:1.2-rc", "localhost:5000/team/app:v2", "index.docker.io/me/web", "docker.io/docker.io/library/x"]):
    write("image_reference", f"ref-{n}", text)
write("changes", "all", "\n".join([
    'CMD ["echo", "hi"]', "ENTRYPOINT /bin/sh -c", 'ENV A=1 B="two words"', "ENV OLD value with spaces",
    "LABEL tier=web version=\"1 2\"", "EXPOSE 80 53/udp", "VOLUME [\"/data\", \"/logs\"]", "WORKDIR /srv",
    "WORKDIR app", "USER 1000:1000", "STOPSIGNAL SIGINT",
]))
write("changes", "bad", "FROM scratch\nENV\nEXPOSE 99999/xyz\nVOLUME relative")
