"""Threaded WSGI server and the shared failure/control plumbing."""
from __future__ import annotations

import json
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def response(start_response, status, body, content_type='application/json',
             headers=()):
    if isinstance(body, str):
        body = body.encode('utf-8')
    start_response(status, [('Content-Type', content_type),
                            ('Content-Length', str(len(body))),
                            *headers])
    return [body]


def json_response(start_response, status, data, headers=()):
    return response(start_response, status, json.dumps(data),
                    'application/json; charset=utf-8', headers)


def read_body(environ, limit=10 * 1024 * 1024):
    try:
        length = int(environ.get('CONTENT_LENGTH') or 0)
    except ValueError:
        length = 0
    return environ['wsgi.input'].read(min(length, limit)) if length else b''


class BaseSimulator:
    """State lock, failure queue and the /_control/<action> API.

    ``fail(mode, count=1, op=None, **options)`` queues ``count`` failures
    of ``mode`` for requests whose operation/path contains ``op``. The
    control API takes the same as JSON: ``POST /_control/fail
    {"mode": "429", "count": 2, "retry_after": 1}``. Other actions map to
    ``control_<action>`` methods (see each simulator).
    """

    def __init__(self):
        self.lock = threading.RLock()
        self.failures: list[dict] = []
        self.requests: list[str] = []
        self._server = None
        self._thread = None
        #: seeded schedule of changes: [(at data request n, kind, seed)]
        self.schedule: list[tuple[int, str, int]] = []
        self.data_requests = 0
        self.changes: list[tuple[str, object]] = []

    # -- failures ------------------------------------------------------
    def fail(self, mode, count=1, op=None, **options):
        with self.lock:
            self.failures.append(dict(options, mode=str(mode),
                                      count=int(count), op=op))

    def take_failure(self, op, **context):
        with self.lock:
            for failure in self.failures:
                if failure['op'] and failure['op'] not in op:
                    continue
                if any(failure.get(k) not in (None, v)
                       for k, v in context.items()):
                    continue
                failure['count'] -= 1
                if failure['count'] <= 0:
                    self.failures.remove(failure)
                return failure
        return None

    def tick(self):
        """Count one data request and apply the scheduled changes that are
        due: the package changes while a sync pages through it."""
        import random
        with self.lock:
            self.data_requests += 1
            due = [c for c in self.schedule if c[0] <= self.data_requests]
            self.schedule = [c for c in self.schedule
                             if c[0] > self.data_requests]
            for _, kind, seed in due:
                if kind == 'outage':  # the source goes down until reset
                    self.fail('500', count=10**6)
                    continue
                self.changes.append((kind, self.random_change(
                    random.Random(seed), kind)))

    def random_change(self, rng, kind):
        """Apply one change of ``kind`` (add, pay, credit, change, delete);
        return the ids of the open items it touched."""
        raise NotImplementedError

    def control_schedule(self, changes):
        """[[at, kind, seed], ...]: changes applied at those requests."""
        with self.lock:
            self.schedule += [(int(a), str(k), int(s)) for a, k, s in changes]
        return {'scheduled': len(self.schedule)}

    @staticmethod
    def sleep_if_timeout(failure):
        if failure and failure['mode'] == 'timeout':
            time.sleep(float(failure.get('seconds') or 3))
            return True
        return False

    def control_fail(self, mode, count=1, op=None, **options):
        self.fail(mode, count, op, **options)
        return {'queued': mode}

    def control_reset_failures(self):
        with self.lock:
            self.failures.clear()
        return {'ok': True}

    def control(self, environ, start_response, action):
        try:
            body = json.loads(read_body(environ) or b'{}')
            method = getattr(self, f'control_{action}', None)
            if method is None:
                return json_response(start_response, '404 Not Found',
                                     {'error': f'unknown action {action}'})
            result = method(**body)
        except (TypeError, ValueError, KeyError) as exc:
            return json_response(start_response, '400 Bad Request',
                                 {'error': str(exc)})
        return json_response(start_response, '200 OK', result)

    # -- serving -------------------------------------------------------
    def start(self, host='127.0.0.1', port=0):
        self._server = make_server(host, port, self,
                                   server_class=ThreadingWSGIServer,
                                   handler_class=QuietHandler)
        self.port = self._server.server_address[1]
        self.url = f'http://{host}:{self.port}'
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={'poll_interval': 0.1},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self, host='127.0.0.1', port=0):
        self.start(host, port)
        try:
            self._thread.join()
        except KeyboardInterrupt:
            self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
