"""The project's one way to pick a loopback port at run time, for programs that cannot bind port 0
themselves (Datadog's test agent, mariadbd, wrk's target...).

The port is free when this returns, not reserved: another process may take it before the caller's
program binds it. A caller that can tell a taken port apart retries with another (the MariaDB
launcher, local/mariadb_server.py, does).
"""

import socket


def free_port():
    """A port of 127.0.0.1 that nothing listens on now (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    print(free_port())
