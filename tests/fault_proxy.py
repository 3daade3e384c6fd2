"""A TCP proxy on loopback for fault-injection tests: in front of a real server (moto's S3) it passes traffic,
slows the upstream direction down, stops answering (`hang`), or cuts connections after N bytes."""
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.mode = "pass"  # pass | hang
        self.rate_bytes_s = None  # client → server throttle
        self.cut_after = None  # close every connection that has sent more than this many bytes upstream
        self.cuts = 0
        self.bytes_up = 0
        self.connections = 0
        self._sockets: list = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _track(self, sock):
        with self._lock:
            self._sockets.append(sock)

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        if self.mode == "hang":  # accept, read, never answer
            self._drain(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _drain(self, sock):
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, src, dst, upward):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.mode == "hang":  # from now on nothing gets through, in either direction
                    self._drain(src)
                    return
                if upward:
                    if self.rate_bytes_s:
                        time.sleep(len(data) / self.rate_bytes_s)
                    sent += len(data)
                    self.bytes_up += len(data)
                    if self.cut_after is not None and sent > self.cut_after:
                        self.cuts += 1
                        src.close()
                        dst.close()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if self.mode != "hang":
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def close(self):
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass
