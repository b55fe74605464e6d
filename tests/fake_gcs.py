"""An in-memory Google Cloud Storage server for the tests: the part of the GCS JSON API that gcsfs (what
`etils.epath` uses for gs://), google-cloud-storage (what Orbax asks about the bucket) and TensorStore's gcs
driver (what Orbax writes arrays with) call, served on 127.0.0.1 from a thread of the test process.

  with FakeGcs(buckets=["bucket"]) as gcs:
      env = gcs.environment()    # the variables that point the three clients at it, for os.environ or a subprocess
      gcs.objects("bucket")      # {name: bytes}; gcs.store("bucket", name, data) writes one
      gcs.refused.append("/tensorboard/")   # writes of objects whose name holds this answer 403 Forbidden

Objects carry generations, and every precondition the clients send is honoured (ifGenerationMatch=0 is an
exclusive create, ifGenerationNotMatch a conditional read) as GCS does: a 412 (or 304) instead of the write
or read. Requests it does not know get 501 and are listed in `unknown`, so a test can fail on them.
Written from the public API reference (cloud.google.com/storage/docs/json_api), nothing copied.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import itertools
import json
import re
import sys
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit


@dataclasses.dataclass
class _Object:
    data: bytes
    generation: int
    content_type: str
    updated: str

    def resource(self, bucket: str, name: str) -> dict:
        return {"kind": "storage#object", "id": f"{bucket}/{name}/{self.generation}", "name": name,
                "bucket": bucket, "generation": str(self.generation), "metageneration": "1",
                "contentType": self.content_type, "size": str(len(self.data)),
                "md5Hash": base64.b64encode(hashlib.md5(self.data).digest()).decode(),
                "timeCreated": self.updated, "updated": self.updated, "storageClass": "STANDARD"}


class _Reply(Exception):
    """Ends a request with an HTTP status and a JSON (or raw) body."""

    def __init__(self, status: int, body=None, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, message: str) -> _Reply:
    return _Reply(status, {"error": {"code": status, "message": message, "errors": [{"message": message}]}})


class FakeGcs:
    """The server; see the module docstring."""

    def __init__(self, buckets=("bucket",)):
        self.buckets: dict[str, dict[str, _Object]] = {b: {} for b in buckets}
        self.unknown: list[str] = []
        self.refused: list[str] = []
        self.uploads: dict[str, dict] = {}  # resumable uploads in progress, by upload_id
        self.lock = threading.Lock()
        self._generations = itertools.count(int(time.time() * 1e6))
        self.httpd = _Server(("127.0.0.1", 0), type("Handler", (_Handler,), {"gcs": self}))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="fake-gcs")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def environment(self) -> dict[str, str]:
        """Environment variables that send gcsfs, google-cloud-storage and TensorStore here, without
        credentials (the server checks none)."""
        return {"STORAGE_EMULATOR_HOST": self.url,  # gcsfs and google-cloud-storage
                "TENSORSTORE_GCS_HTTP_URL": self.url,  # TensorStore's gcs driver
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "offline",  # TensorStore: no credential lookup
                "GOOGLE_CLOUD_PROJECT": "offline",
                # gcsfs asks the storage-control gRPC API for the bucket's layout first; plain GCS instead:
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    def objects(self, bucket: str) -> dict[str, bytes]:
        with self.lock:
            return {name: obj.data for name, obj in sorted(self.buckets[bucket].items())}

    def store(self, bucket: str, name: str, data: bytes) -> None:
        """Writes an object as a client would (for a test to lay out a bucket)."""
        with self.lock:
            self.put(bucket, name, data, "application/octet-stream", {})

    # -- the operations: callers hold `lock` ---------------------------------------------------------------------
    def bucket_objects(self, name: str) -> dict[str, _Object]:
        if name not in self.buckets:
            raise _error(404, f"bucket {name} not found")
        return self.buckets[name]

    @staticmethod
    def check_preconditions(obj: _Object | None, query: dict) -> None:
        """ifGenerationMatch (0: must not exist) and ifGenerationNotMatch, as GCS answers them."""
        generation = 0 if obj is None else obj.generation
        if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != generation:
            raise _error(412, "conditionNotMet")
        if "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == generation:
            raise _Reply(304)

    def writable(self, bucket: str, name: str, query: dict) -> dict[str, _Object]:
        """The bucket's objects, when `name` may be written there under `query`'s preconditions."""
        objects = self.bucket_objects(bucket)
        if any(part in name for part in self.refused):
            raise _error(403, f"the caller does not have storage.objects.create access to {bucket}/{name}")
        self.check_preconditions(objects.get(name), query)
        return objects

    def put(self, bucket: str, name: str, data: bytes, content_type: str, query: dict) -> dict:
        objects = self.writable(bucket, name, query)
        updated = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 10**6:06d}Z"
        objects[name] = _Object(bytes(data), next(self._generations), content_type, updated)
        return objects[name].resource(bucket, name)

    def get(self, bucket: str, name: str, query: dict) -> _Object:
        obj = self.bucket_objects(bucket).get(name)
        if obj is None:
            raise _error(404, f"No such object: {bucket}/{name}")
        self.check_preconditions(obj, query)
        return obj

    def delete(self, bucket: str, name: str, query: dict) -> None:
        self.get(bucket, name, query)
        del self.buckets[bucket][name]

    def list(self, bucket: str, query: dict) -> dict:
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        start, end = query.get("startOffset", ""), query.get("endOffset")
        items, prefixes = [], set()
        for name, obj in sorted(self.bucket_objects(bucket).items()):
            if not name.startswith(prefix) or name < start or (end and name >= end):
                continue
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
            else:
                items.append(obj.resource(bucket, name))
        out = {"kind": "storage#objects", "items": items}
        if prefixes:
            out["prefixes"] = sorted(prefixes)
        return out


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # gcsfs asks two questions at once and hangs up on the slower answer: not an error of the server.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart (delayed ACKs)
    gcs: FakeGcs

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self._serve(self._get)

    def do_POST(self):
        self._serve(self._post)

    def do_DELETE(self):
        self._serve(self._delete)

    def do_PUT(self):
        self._serve(self._post)

    def do_HEAD(self):
        self._serve(lambda body: self._unknown())

    do_PATCH = do_HEAD

    # -- plumbing --------------------------------------------------------------------------------------------
    def _serve(self, route):
        parts = urlsplit(self.path)
        self.segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._body()
        try:
            with self.gcs.lock:
                reply = route(body)
        except _Reply as r:
            reply = r
        self._send(reply)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, reply: _Reply) -> None:
        body = reply.body
        if isinstance(body, (dict, list)):
            body, kind = json.dumps(body).encode(), "application/json; charset=UTF-8"
        else:
            body, kind = body or b"", reply.headers.pop("Content-Type", "application/octet-stream")
        self.send_response(reply.status)
        for key, value in {"Content-Type": kind, **reply.headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if reply.status != 304 else 0))
        self.end_headers()
        if self.command != "HEAD" and reply.status != 304:
            self.wfile.write(body)

    def _unknown(self) -> _Reply:
        self.gcs.unknown.append(f"{self.command} {self.path}")
        return _error(501, f"the fake GCS server does not know {self.command} {self.path}")

    def _object_path(self, start: int) -> tuple[str, str] | None:
        """(bucket, object) of .../b/<bucket>/o/<object> with "b" at segments[start]."""
        s = self.segments
        if len(s) > start + 3 and s[start] == "b" and s[start + 2] == "o":
            return s[start + 1], "/".join(s[start + 3:])
        return None

    # -- routes ----------------------------------------------------------------------------------------------
    def _get(self, body: bytes) -> _Reply:
        s, gcs = self.segments, self.gcs
        if s[:3] == ["storage", "v1", "b"] and len(s) == 4:
            gcs.bucket_objects(s[3])
            return _Reply(200, {"kind": "storage#bucket", "id": s[3], "name": s[3], "location": "US",
                                "storageClass": "STANDARD"})
        if s[:3] == ["storage", "v1", "b"] and len(s) == 5 and s[4] == "o":
            return _Reply(200, gcs.list(s[3], self.query))
        found = self._object_path(2) if s[:2] == ["storage", "v1"] else \
            self._object_path(3) if s[:3] == ["download", "storage", "v1"] else None
        if found is None:
            return self._unknown()
        obj = gcs.get(*found, self.query)
        if self.query.get("alt") != "media":
            return _Reply(200, obj.resource(*found))
        return self._media(obj)

    def _media(self, obj: _Object) -> _Reply:
        headers = {"x-goog-generation": str(obj.generation), "x-goog-metageneration": "1",
                   "x-goog-stored-content-length": str(len(obj.data)), "Content-Type": obj.content_type}
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if not wanted:
            return _Reply(200, obj.data, headers)
        size = len(obj.data)
        first, last = wanted.groups()
        if first == "":  # the last n bytes
            start, stop = max(size - int(last), 0), size
        else:
            start, stop = int(first), min(int(last) + 1, size) if last else size
        if start >= size and size > 0:
            return _Reply(416, b"", {"Content-Range": f"bytes */{size}"})
        headers["Content-Range"] = f"bytes {start}-{max(stop - 1, start)}/{size}"
        return _Reply(206, obj.data[start:stop], headers)

    def _post(self, body: bytes) -> _Reply:
        s, gcs, q = self.segments, self.gcs, self.query
        if s[:4] == ["upload", "storage", "v1", "b"] and len(s) == 6 and s[5] == "o":
            kind = q.get("uploadType")
            if kind == "media":
                return _Reply(200, gcs.put(s[4], q["name"], body, self.headers.get("Content-Type", ""), q))
            if kind == "multipart":
                metadata, data, content_type = _multipart_related(self.headers["Content-Type"], body)
                return _Reply(200, gcs.put(s[4], metadata.get("name") or q["name"], data, content_type, q))
            if kind == "resumable" and "upload_id" in q:
                return self._resume(q["upload_id"], body)
            if kind == "resumable":
                return self._start_upload(s[4], body)
        if s == ["batch", "storage", "v1"]:
            return self._batch(body)
        found = self._object_path(2) if s[:2] == ["storage", "v1"] else None
        if found and re.search(r"/(rewriteTo/b|moveTo/o)/", found[1]):
            return self._copy(*found)
        return self._unknown()

    def _copy(self, bucket: str, rest: str) -> _Reply:
        """.../o/<source>/rewriteTo/b/<bucket>/o/<target> and .../o/<source>/moveTo/o/<target>."""
        move = "/moveTo/o/" in "/" + rest
        source, _, target = rest.partition("/moveTo/o/" if move else "/rewriteTo/b/")
        target_bucket, target = (bucket, target) if move else target.split("/o/", 1)
        obj = self.gcs.get(bucket, source, {})
        condition = {k: v for k, v in self.query.items() if k == "ifGenerationMatch"}  # on the target
        resource = self.gcs.put(target_bucket, target, obj.data, obj.content_type, condition)
        if move:
            del self.gcs.buckets[bucket][source]
            return _Reply(200, resource)
        return _Reply(200, {"kind": "storage#rewriteResponse", "done": True, "resource": resource,
                            "totalBytesRewritten": resource["size"], "objectSize": resource["size"]})

    def _start_upload(self, bucket: str, body: bytes) -> _Reply:
        """A resumable upload: the object's name and preconditions now, its bytes in later requests."""
        name = json.loads(body or b"{}").get("name") or self.query["name"]
        self.gcs.writable(bucket, name, self.query)  # fail early, as GCS does
        upload_id = f"upload-{next(self.gcs._generations)}"
        self.gcs.uploads[upload_id] = {"bucket": bucket, "name": name, "data": bytearray(), "query": self.query,
                                       "type": self.headers.get("X-Upload-Content-Type", "application/octet-stream")}
        location = f"{self.gcs.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={upload_id}"
        return _Reply(200, {}, {"Location": location})

    def _resume(self, upload_id: str, body: bytes) -> _Reply:
        """A chunk "bytes a-b/*" (308, more to come) or the last one "bytes a-b/n" or "bytes */n" (the object)."""
        upload = self.gcs.uploads.get(upload_id)
        if upload is None:
            raise _error(404, f"no upload {upload_id}")
        if self.command == "DELETE":
            del self.gcs.uploads[upload_id]
            return _Reply(499)
        upload["data"] += body
        total = self.headers.get("Content-Range", "").rsplit("/", 1)[-1]
        if total == "*":
            return _Reply(308, b"", {"Range": f"bytes=0-{len(upload['data']) - 1}"})
        del self.gcs.uploads[upload_id]
        return _Reply(200, self.gcs.put(upload["bucket"], upload["name"], upload["data"], upload["type"],
                                        upload["query"]))

    def _delete(self, body: bytes) -> _Reply:
        if self.segments[:4] == ["upload", "storage", "v1", "b"] and "upload_id" in self.query:
            return self._resume(self.query["upload_id"], body)
        found = self._object_path(2) if self.segments[:2] == ["storage", "v1"] else None
        if found is None:
            return self._unknown()
        self.gcs.delete(*found, self.query)
        return _Reply(204)

    def _batch(self, body: bytes) -> _Reply:
        """A multipart/mixed batch of DELETE requests (gcsfs's rm of several objects)."""
        answers = []
        for line in re.findall(r"^DELETE (\S+) HTTP/1\.1", body.decode(), flags=re.M):
            parts = urlsplit(line)
            segments = [unquote(x) for x in parts.path.strip("/").split("/")]
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            try:
                self.gcs.delete(segments[3], "/".join(segments[5:]), query)
                answers.append("HTTP/1.1 204 No Content\r\n\r\n")
            except _Reply as r:
                answers.append(f"HTTP/1.1 {r.status} Error\r\nContent-Type: application/json\r\n\r\n"
                               f"{json.dumps(r.body)}\r\n")
        boundary = "batch_fake_gcs"
        text = "".join(f"--{boundary}\r\nContent-Type: application/http\r\n\r\n{a}" for a in answers)
        return _Reply(200, f"{text}--{boundary}--\r\n".encode(),
                      {"Content-Type": f"multipart/mixed; boundary={boundary}"})


def _multipart_related(content_type: str, body: bytes) -> tuple[dict, bytes, str]:
    """(JSON metadata, data, data's content type) of a multipart/related upload: two parts, metadata first."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type).group(1).encode()
    parts = [p for p in body.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    if len(parts) != 2:
        raise _error(400, f"multipart upload with {len(parts)} parts, expected 2")
    heads_and_bodies = [re.split(rb"\r?\n\r?\n", p.lstrip(b"\r\n"), maxsplit=1) for p in parts]
    metadata = json.loads(heads_and_bodies[0][1])
    head, data = heads_and_bodies[1]
    data = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
    kind = re.search(rb"content-type:\s*([^\r\n]+)", head, flags=re.I)
    return metadata, data, kind.group(1).decode() if kind else "application/octet-stream"
