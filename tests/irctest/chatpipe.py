"""irctest controller for chatpipe.

irctest (the IRC servers' conformance suite, github.com/progval/irctest) imports
this module with `--controller chatpipe` when this folder is on PYTHONPATH;
`tests/irctest/run` does that. `run()` starts one chatpipe server in irctest's
temporary directory with only its IRC door on the address irctest chose (the
text door on a free port, the web and admin doors off), rate limits and
per-address limits off (the tests send bursts and open many connections from
127.0.0.1), its store in the temporary directory, and an admin account
`operuser`/`operpassword` for `OPER`.

The server is named `My.Little.Server` when the binary knows `[irc]
server_name`; older binaries reject that key (`unknown field`), so it is probed
once and left out for them, and the tests that check the name fail there.

The binary is `$CHATPIPE_BIN`, else the repository's target/release/chatpipe,
else target/debug/chatpipe.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Optional, Set, Type

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

REPO = Path(__file__).resolve().parents[2]

SERVER_NAME = "My.Little.Server"
NETWORK_NAME = "MyLittleNetwork"

# Every door but IRC is off or on a free port, so parallel runs and a chatpipe
# already running on its default ports do not collide.
CONFIG = """\
[irc]
listen = "{hostname}:{port}"
{irc_names}
[server]
listen = "127.0.0.1:0"
[web]
listen = ""
[admin]
listen = ""
[rate_limit]
per_second = 0
[admission]
exempt = ["127.0.0.0/8", "::1"]
login_failures = 1000000
[storage]
path = "{directory}/chatpipe.db"
[filters]
dir = "{directory}/filters"

[[accounts]]
name = "operuser"
password_hash = "{oper_hash}"
role = "admin"
"""

_hash_cache: Dict[str, str] = {}
_supports_server_name: Optional[bool] = None


def binary() -> str:
    explicit = os.environ.get("CHATPIPE_BIN")
    if explicit:
        return explicit
    for profile in ("release", "debug"):
        candidate = REPO / "target" / profile / "chatpipe"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("no chatpipe binary: cargo build, or set CHATPIPE_BIN")


def password_hash(password: str) -> str:
    if password not in _hash_cache:
        out = subprocess.run(
            [binary(), "hash-password"],
            input=password + "\n",
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        _hash_cache[password] = out.stdout.strip().splitlines()[-1]
    return _hash_cache[password]


def supports_server_name() -> bool:
    """Whether the binary accepts `[irc] server_name`, without starting a server.

    The probe file names `server_name` first and then gives `[server] listen`
    a wrong type, so loading it always fails before anything binds: on the
    unknown key when the binary does not have it, else on the type.
    """
    global _supports_server_name
    if _supports_server_name is None:
        with tempfile.TemporaryDirectory() as scratch:
            probe = Path(scratch) / "probe.toml"
            probe.write_text('[irc]\nserver_name = "probe"\n[server]\nlisten = 0\n')
            out = subprocess.run(
                [binary(), "--config", str(probe)],
                capture_output=True,
                text=True,
                cwd=scratch,
                timeout=60,
            )
        rejected = "unknown field `server_name`" in out.stderr
        _supports_server_name = not rejected
    return _supports_server_name


class ChatpipeController(BaseServerController, DirectoryBasedController):
    software_name = "chatpipe"
    supported_sasl_mechanisms: Set[str] = {"PLAIN"}
    supports_sts = False

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        if ssl:
            raise NotImplementedByController("TLS")
        if run_services:
            raise NotImplementedByController("services")
        if password is not None:
            raise NotImplementedByController("PASS")
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        (self.directory / "filters").mkdir(exist_ok=True)
        if supports_server_name():
            irc_names = (
                f'server_name = "{SERVER_NAME}"\nnetwork_name = "{NETWORK_NAME}"\n'
            )
        else:
            irc_names = ""
        with self.open_file("chatpipe.toml") as fd:
            fd.write(
                CONFIG.format(
                    hostname=hostname,
                    port=port,
                    irc_names=irc_names,
                    directory=self.directory,
                    oper_hash=password_hash("operpassword"),
                )
            )
        if faketime and shutil.which("faketime"):
            faketime_cmd = ["faketime", "-f", faketime]
            self.faketime_enabled = True
        else:
            faketime_cmd = []
        self.proc = self.execute(
            [*faketime_cmd, binary(), "--config", str(self.directory / "chatpipe.toml")],
            cwd=self.directory,
        )
        # tests/irctest/run ends every server left running after the suite (irctest leaves a
        # few behind).
        pidfile = os.environ.get("CHATPIPE_PIDFILE")
        if pidfile:
            with open(pidfile, "a") as fd:
                fd.write(f"{self.proc.pid}\n")


def get_irctest_controller_class() -> Type[ChatpipeController]:
    return ChatpipeController
