"""bench/ha_failover.py (run by bench/ha_failover.sh): on the layout of
scripts/ha.sh (synchronous_mode on),

 1. write unavailability over 5 node losses: a writer inserts a row every
    20 ms through HAProxy's read-write port; kill-leader; the outage is the
    time from the last acknowledged insert before the kill to the first one
    after it.  After each loss `ha.sh up` brings the node back (pg_rewind)
    before the next.  Prints each, then min, median and max against the
    15 s target.
 2. the latency cost of synchronous_mode on a commit: pgbench, one client
    at 8 transactions a second (latency, not throughput: below the order
    sender's 10 orders a second, so no queue builds up), on the leader's
    PostgreSQL directly, one transaction = one
    trading.place_order (risk checks, the request row, the sender's wake-up;
    the order sender sends them to a paper broker) or one single-row INSERT
    (the bare commit), with synchronous_mode off and on alternating, 3
    rounds each, same layout; prints the medians and the ratio on/off.
"""
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'suites'))
from ha_lib import Layout, PaperBroker, Writer, setup_orders, wait_failover  # noqa: E402

LOSSES = int(os.environ.get('HA_BENCH_LOSSES', '5'))
SECS = int(os.environ.get('HA_BENCH_SECONDS', '15'))
RATE = int(os.environ.get('HA_BENCH_RATE', '8'))
ROUNDS = int(os.environ.get('HA_BENCH_ROUNDS', '3'))


def set_sync(layout, on):
    import json
    import urllib.request
    leader = layout.leader()
    req = urllib.request.Request('http://127.0.0.1:%d/config' % layout.node_port(leader, 'REST'),
                                 data=json.dumps({'synchronous_mode': on}).encode(), method='PATCH')
    urllib.request.urlopen(req, timeout=10).read()
    want = "<> ''" if on else "= ''"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if layout.su_query(leader, "SELECT count(*) FROM pg_settings WHERE name = 'synchronous_standby_names' "
                                   "AND setting %s" % want)[0][0] == 1:
            return
        time.sleep(0.2)
    raise RuntimeError('synchronous_mode did not become %s' % on)


def pgbench(layout, script):
    """Average commit latency (ms) of one client at RATE transactions a
    second (below the order sender's 10 orders/s, so that no queue builds
    up), without pgbench's schedule lag; and the transactions done."""
    leader = layout.leader()
    r = subprocess.run(['pgbench', '-n', '-M', 'simple', '-c', '1', '-R', str(RATE), '-T', str(SECS),
                        '-f', script, '-h', layout.env['HA_SOCKET_DIR'], '-p', str(layout.node_port(leader)),
                        '-U', 'postgres', 'trading'], capture_output=True, text=True, timeout=SECS + 120)
    lat = re.search(r'latency average = ([\d.]+) ms', r.stdout)
    lag = re.search(r'rate limit schedule lag: avg ([\d.]+)', r.stdout)
    n = re.search(r'number of transactions actually processed: (\d+)', r.stdout)
    if r.returncode != 0 or not lat:
        raise RuntimeError('pgbench failed: %s %s' % (r.stdout, r.stderr))
    return float(lat.group(1)) - (float(lag.group(1)) if lag else 0.0), int(n.group(1))


def main():
    layout = Layout('ha-bench', sync=True)
    print('layout in %s, ports %d-%d' % (layout.dir, layout.base, layout.base + 39), flush=True)
    broker = PaperBroker(os.path.join(layout.dir, 'broker'), '--no-rate-limit', '--quiet')
    layout.envvars['HA_BROKER_URL'] = broker.url
    try:
        layout.up()
        c = layout.rw()
        with c.cursor() as cur:
            cur.execute('CREATE TABLE ha_bench_acks (n int PRIMARY KEY)')
            cur.execute('CREATE TABLE ha_bench_commit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), v int)')
        c.close()

        # ---- 1. write unavailability over node losses
        outages = []
        start = 1
        for k in range(1, LOSSES + 1):
            w = Writer(layout.env['HA_DSN_RW'], 'ha_bench_acks', start=start)
            w.start()
            time.sleep(3)
            t_before = time.monotonic()
            killed = layout.run('kill-leader').stdout.strip()
            back = wait_failover(layout, w, int(killed[4:]), 120)
            w.stop.set()
            w.join(30)
            if not back:
                raise RuntimeError('writes did not resume after loss %d' % k)
            outage = w.outage(t_before - 2)
            outages.append(outage)
            new = layout.leader()
            print('loss %d: killed %s, writes back after %.2f s on node%s' % (k, killed, outage, new), flush=True)
            start = w.n + 1000
            layout.up()        # the killed node rejoins (pg_rewind) before the next loss
        print('write unavailability over %d node losses: min %.2f s, median %.2f s, max %.2f s (target 15 s: %s)'
              % (len(outages), min(outages), statistics.median(outages), max(outages),
                 'met' if max(outages) <= 15 else 'MISSED'), flush=True)

        # ---- 2. synchronous_mode's cost on a commit
        scripts = {'INSERT': 'INSERT INTO ha_bench_commit (v) VALUES (1);\n'}
        if setup_orders(layout):
            scripts['place_order'] = "SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, strategy => 'bench');\n"
        else:
            print('trading.place_order is not installed: the plain INSERT only', flush=True)
        res = {}
        for rnd in range(ROUNDS):
            for on in (False, True):
                set_sync(layout, on)
                for name, text in scripts.items():
                    script = os.path.join(layout.dir, 'commit_%s.sql' % name)
                    with open(script, 'w') as f:
                        f.write(text)
                    lat, n = pgbench(layout, script)
                    res.setdefault((name, on), []).append(lat)
                    print('round %d, %-11s synchronous_mode %-3s: latency %.3f ms (%d commits)'
                          % (rnd + 1, name, 'on' if on else 'off', lat, n), flush=True)
        for name in scripts:
            off = statistics.median(res[(name, False)])
            on = statistics.median(res[(name, True)])
            print('%s commit latency, 1 client at %d/s, median of %d rounds: async %.3f ms, '
                  'synchronous_mode %.3f ms: %.2fx (+%.3f ms)'
                  % (name, RATE, ROUNDS, off, on, on / off, on - off), flush=True)
    finally:
        layout.down(purge=True)
        broker.stop()


if __name__ == '__main__':
    main()
