"""Session managers: the Non Session Management (NSM) API, as RaySession and Agordejo speak it.

When ``NSM_URL`` is set, ``debleed live`` (see :func:`debleed.cli.live.cmd_live`):

1. announces itself: ``/nsm/server/announce "debleed" "" <executable> 1 2 <pid>`` (no optional
   capabilities);
2. waits for ``/nsm/client/open <path> <display name> <client id>``: the gig file is
   ``<path>/gig.toml`` in the session folder (copied there from ``--config``, or from the shipped
   ``configs/gigs/snare_trigger.toml``, the first time), and the JACK client is named by the
   client id, as the API requires;
3. replies ``/reply "/nsm/client/open" "OK"`` once the engine runs;
4. answers ``/nsm/client/save`` by writing the changed parameters into the gig file
   (:meth:`debleed.rt.control.LiveControl.save`) and ``/reply "/nsm/client/save" "OK"``
   (``/error "/nsm/client/save" -1 <message>`` when it cannot);
5. quits cleanly on SIGTERM, as the API asks (the same path as Ctrl-C).

Source: the NSM API, https://new-session-manager.jackaudio.org/api/index.html (messages,
argument types, and the rule that the client id is the JACK client name).
"""

from __future__ import annotations

import os
import shutil
import threading
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer

from debleed.errors import DebleedError
from debleed.rt.control.osc import _message

API_MAJOR, API_MINOR = 1, 2
#: How long to wait for the session manager's ``open``, s.
OPEN_TIMEOUT_S = 30.0
GIG_NAME = "gig.toml"


def parse_nsm_url(url: str) -> tuple[str, int]:
    """``osc.udp://host:port/`` -> ``(host, port)``.

    Raises
    ------
    DebleedError
        If ``url`` is not an ``osc.udp://host:port/`` URL.
    """
    u = urlparse(url)
    if u.scheme != "osc.udp" or not u.hostname or not u.port:
        raise DebleedError(f"NSM_URL must look like osc.udp://host:port/, got {url!r}")
    return u.hostname, u.port


class NsmClient:
    """One NSM client session (see the module docs).

    Parameters
    ----------
    url : str
        ``NSM_URL``.
    template : str or Path, optional
        Gig file copied into a new session; default the shipped ``snare_trigger.toml``.
    """

    def __init__(self, url: str, template=None):
        self.server_addr = parse_nsm_url(url)
        self.template = template
        self.on_save = None
        self._closed = False
        self.client_name: str | None = None
        self.path: Path | None = None
        self._opened = threading.Event()
        self._announced = threading.Event()
        self._error: str | None = None
        disp = Dispatcher()
        disp.map("/nsm/client/open", self._on_open)
        disp.map("/nsm/client/save", self._on_save)
        disp.map("/reply", self._on_reply)
        disp.map("/error", self._on_error)
        disp.set_default_handler(lambda *a: None)
        host = "127.0.0.1" if self.server_addr[0] in ("localhost", "127.0.0.1") else "0.0.0.0"
        self.server = ThreadingOSCUDPServer((host, 0), disp)
        threading.Thread(target=self.server.serve_forever, name="debleed-nsm", daemon=True).start()

    def _send(self, address: str, *args) -> None:
        self.server.socket.sendto(_message(address, *args), self.server_addr)

    # --- handlers (the NSM thread) ---------------------------------------------------------
    def _on_reply(self, _addr, *args):
        if args and args[0] == "/nsm/server/announce":
            self._announced.set()

    def _on_error(self, _addr, *args):
        if args and args[0] == "/nsm/server/announce":
            self._error = f"the session manager refused the announce: {args[2] if len(args) > 2 else args}"
            self._opened.set()

    def _on_open(self, _addr, path, _display_name, client_id, *_):
        try:
            folder = Path(path)
            folder.mkdir(parents=True, exist_ok=True)
            gig = folder / GIG_NAME
            if not gig.exists():
                src = Path(self.template) if self.template else Path(
                    str(resources.files("debleed.configs.gigs").joinpath("snare_trigger.toml")))
                tmp = gig.with_name(f".{GIG_NAME}.{os.getpid()}.tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, gig)
            self.path, self.client_name = gig, client_id
        except OSError as e:
            self._error = f"cannot set up the session folder {path!r}: {e}"
            self._send("/error", "/nsm/client/open", -1, self._error)
        self._opened.set()

    def _on_save(self, _addr, *_):
        try:
            if self.on_save is None:
                raise DebleedError("not running yet")
            self.on_save()
            self._send("/reply", "/nsm/client/save", "OK")
        except Exception as e:  # answered, never raised into the server thread
            self._send("/error", "/nsm/client/save", -1, f"debleed could not save: {e}")

    # --- the main thread -------------------------------------------------------------------
    def open(self, timeout_s: float = OPEN_TIMEOUT_S) -> Path:
        """Announce, wait for ``open``; return the gig file in the session folder.

        Raises
        ------
        DebleedError
            If the manager refuses, or sends no ``open`` within ``timeout_s``.
        """
        self._send("/nsm/server/announce", "debleed", "", "debleed",
                   API_MAJOR, API_MINOR, os.getpid())
        if not self._opened.wait(timeout_s):
            raise DebleedError(f"NSM: no /nsm/client/open from {self.server_addr[0]}:{self.server_addr[1]} "
                               f"within {timeout_s:g} s")
        if self._error:
            raise DebleedError(f"NSM: {self._error}")
        return self.path

    def ready(self) -> None:
        """Tell the manager the session is open (the engine runs)."""
        self._send("/reply", "/nsm/client/open", "OK")
        self._ready = True

    def fail(self, message: str) -> None:
        """Tell the manager the session could not be opened (bad gig file, no JACK server);
        nothing once :meth:`ready` has answered."""
        if getattr(self, "_ready", False) or self._closed:
            return
        self._send("/error", "/nsm/client/open", -1, f"debleed could not open the session: {message}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.server.shutdown()
        self.server.server_close()
