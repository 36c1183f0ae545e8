"""ha_lib: helpers shared by test/suites/ha_patroni.py and bench/ha_failover.py.

A Layout drives scripts/ha.sh (up, down, env, kill-leader, switchover) on a
free range of ports and a private directory; Writer and Reader are client
threads that run through HAProxy during a failover and record what was
acknowledged and when; haproxy_stat() reads HAProxy's admin socket.

Runs as the postgres user with Debian's /usr/bin/python3 (psycopg2 is a
dependency of Patroni).
"""
import os
import random
import shlex
import socket
import subprocess
import threading
import time

import psycopg2
import psycopg2.errors

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
HA_SH = os.path.join(SRC, 'scripts', 'ha.sh')


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_base():
    """A base whose 40 ports are free, in 20000-31000 (below the ephemeral range)."""
    for _ in range(200):
        base = random.randrange(20000, 31000, 50)
        if all(port_free(base + k) for k in range(40)):
            return base
    raise RuntimeError('no free range of 40 ports')


class Layout:
    def __init__(self, name, sync=True):
        self.base = free_base()
        self.dir = '/var/tmp/%s-%d-%d' % (name, self.base, os.getpid())
        self.envvars = dict(os.environ, HA_PORT_BASE=str(self.base), HA_DIR=self.dir,
                            HA_SYNC='1' if sync else '0')
        self.env = {}

    def run(self, *args, timeout=600, check=True):
        r = subprocess.run([HA_SH] + list(args), env=self.envvars, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError('ha.sh %s failed (%d): %s%s' % (' '.join(args), r.returncode,
                                                               r.stdout, r.stderr))
        return r

    def up(self, sync=None):
        if sync is not None:
            self.envvars['HA_SYNC'] = '1' if sync else '0'
        self.run('up')
        self.env = {}
        for line in self.run('env').stdout.splitlines():
            k, v = line.split('=', 1)
            self.env[k] = shlex.split(v)[0] if v else ''
        return self

    def down(self, purge=True):
        return self.run('down', *(['--purge'] if purge else []), check=False)

    def node_port(self, i, what='PORT'):
        return int(self.env['HA_NODE%d_%s' % (i, what)])

    def su(self, i, dbname='trading'):
        """A superuser connection to node i over its Unix socket."""
        c = psycopg2.connect(host=self.env['HA_SOCKET_DIR'], port=self.node_port(i),
                             user='postgres', dbname=dbname, connect_timeout=5)
        c.autocommit = True
        return c

    def su_query(self, i, sql, args=None, dbname='trading'):
        c = self.su(i, dbname)
        try:
            with c.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else None
        finally:
            c.close()

    def rw(self, **kw):
        c = psycopg2.connect(self.env['HA_DSN_RW'], connect_timeout=5, **kw)
        c.autocommit = True
        return c

    def ro(self, **kw):
        c = psycopg2.connect(self.env['HA_DSN_RO'], connect_timeout=5, **kw)
        c.autocommit = True
        return c

    def rest(self, i, path):
        """(status, body) of Patroni's REST API of node i."""
        s = socket.create_connection(('127.0.0.1', self.node_port(i, 'REST')), timeout=5)
        try:
            s.sendall(('GET %s HTTP/1.0\r\n\r\n' % path).encode())
            data = b''
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head, _, body = data.decode(errors='replace').partition('\r\n\r\n')
        return int(head.split()[1]), body

    def leader(self):
        for i in (1, 2, 3):
            try:
                if self.rest(i, '/primary')[0] == 200:
                    return i
            except OSError:
                pass
        return None

    def sync_standby(self):
        """The node number of the leader's synchronous standby, or None."""
        leader = self.leader()
        if leader is None:
            return None
        rows = self.su_query(leader, "SELECT application_name FROM pg_stat_replication "
                                     "WHERE sync_state IN ('sync', 'quorum') AND state = 'streaming'",
                             dbname='postgres')
        return int(rows[0][0][4:]) if rows else None

    def haproxy_stat(self):
        return haproxy_stat(self.env['HA_ADMIN_SOCKET'])

    def log(self, name):
        path = os.path.join(self.dir, 'log', name)
        try:
            with open(path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''


def haproxy_stat(path):
    """{'backend/server': {column: value}} from HAProxy's `show stat`."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    s.sendall(b'show stat\n')
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    lines = data.decode().splitlines()
    cols = lines[0].lstrip('# ').split(',')
    out = {}
    for line in lines[1:]:
        if not line:
            continue
        f = dict(zip(cols, line.split(',')))
        out['%s/%s' % (f['pxname'], f['svname'])] = f
    return out


class _Client(threading.Thread):
    """A client that runs step(cursor) through a DSN every `pause` seconds
    (autocommit), reconnecting after any error; errors are recorded as
    (monotonic time, first line of the message)."""

    def __init__(self, dsn, pause):
        super().__init__(daemon=True)
        self.dsn, self.pause = dsn, pause
        self.errors = []
        self.stop = threading.Event()

    def step(self, cur):
        raise NotImplementedError

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.dsn, connect_timeout=3)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    self.step(cur)
            except psycopg2.Error as e:
                self.errors.append((time.monotonic(), str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                time.sleep(0.1)
                continue
            time.sleep(self.pause)
        if conn is not None:
            conn.close()


class Writer(_Client):
    """Inserts numbered rows through a DSN, one autocommit INSERT each,
    reconnecting after any error; records each acknowledged number and when."""

    def __init__(self, dsn, table, start=1, pause=0.02):
        super().__init__(dsn, pause)
        self.table, self.n = table, start
        self.acked = []          # (n, monotonic time)

    def step(self, cur):
        n = self.n
        self.n += 1
        cur.execute('INSERT INTO %s (n) VALUES (%%s)' % self.table, (n,))
        self.acked.append((n, time.monotonic()))

    def gap_after(self, t):
        """Seconds from t to the first acknowledgement after it (None if none)."""
        after = [a for _, a in self.acked if a > t]
        return (after[0] - t) if after else None

    def outage(self, since):
        """The longest time without an acknowledgement among those from
        `since` on: the unavailability of a failover that began after it."""
        times = [a for _, a in self.acked if a >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=None)


def wait_failover(layout, writer, killed, timeout=120):
    """After a node loss: wait until another node leads and the writer has
    an acknowledgement from after that moment (an answer already on its way
    when the node died can arrive after the kill: it does not count).
    Returns True when writes are back."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        if seen is None:
            leader = layout.leader()
            if leader is not None and leader != killed:
                seen = time.monotonic()
        elif writer.gap_after(seen) is not None:
            return True
        time.sleep(0.1)
    return False


class OrderPlacer(_Client):
    """Queues an order every `pause` seconds through a DSN with
    trading.place_order, reconnecting after any error; records the request
    id of every acknowledged (committed) call."""

    def __init__(self, dsn, pause=0.1, strategy='ha'):
        super().__init__(dsn, pause)
        self.strategy = strategy
        self.acked = []

    def step(self, cur):
        cur.execute("SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, strategy => %s)",
                    (self.strategy,))
        self.acked.append(cur.fetchone()[0])


class PaperBroker:
    """The paper broker (paper-broker from the PostgreSQL bindir, where
    make install puts it) on a free loopback port."""
    API_KEY = 'paper_api_key'
    TOKEN = 'paper_access_token'

    def __init__(self, workdir, *args):
        os.makedirs(workdir, exist_ok=True)
        portfile = os.path.join(workdir, 'paper-broker.port')
        self.log = open(os.path.join(workdir, 'paper-broker.log'), 'w')
        self.proc = subprocess.Popen(['paper-broker', '--port', '0', '--port-file', portfile,
                                      '--admin-port', '-1', '--cash', '1e12'] + list(args),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(portfile) and open(portfile).read().strip():
                self.port = int(open(portfile).read().strip())
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError('paper-broker did not start')

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def orders(self):
        """The broker's order book (GET /orders)."""
        import json
        import urllib.request
        req = urllib.request.Request(self.url + '/orders', headers={
            'X-Kite-Version': '3', 'Authorization': 'token %s:%s' % (self.API_KEY, self.TOKEN)})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())['data']

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


def setup_orders(layout):
    """A paper broker session and an instrument (INFY), on the leader; True
    when the installed extension has the order outbox (trading.place_order)."""
    leader = layout.leader()
    if layout.su_query(leader, "SELECT to_regproc('trading.place_order') IS NOT NULL")[0][0] is not True:
        return False
    layout.su_query(leader, "SELECT trading.set_broker_session(%s, %s)", (PaperBroker.API_KEY, PaperBroker.TOKEN))
    layout.su_query(leader, """INSERT INTO trading.instruments
        (instrument_token, tradingsymbol, exchange, tick_size, lot_size, segment)
        VALUES (408065, 'INFY', 'NSE', 0.05, 1, 'NSE') ON CONFLICT DO NOTHING""")
    return True


class Reader(threading.Thread):
    """Reads through a DSN on a new connection every `pause` seconds (what a
    dashboard does); records successes and failures."""

    def __init__(self, dsn, sql, pause=0.2):
        super().__init__(daemon=True)
        self.dsn, self.sql, self.pause = dsn, sql, pause
        self.ok = 0
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                c = psycopg2.connect(self.dsn, connect_timeout=3)
                try:
                    with c.cursor() as cur:
                        cur.execute(self.sql)
                        cur.fetchall()
                finally:
                    c.close()
                self.ok += 1
            except psycopg2.Error as e:
                self.errors.append((time.monotonic(), str(e).strip()))
            time.sleep(self.pause)
