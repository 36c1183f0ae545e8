# Request ids, and so tags, never repeat across a failover (docs/HA.md).
# A sequence is WAL-logged 32 values ahead: with asynchronous replication
# the record of a later batch can die with the old leader, which may have
# sent orders under those ids' tags already.  A promoted standby numbers
# its requests from (timeline - 1) x 10^9, past anything the old leader
# could have used.
#
# A primary and a streaming standby share one paper broker.  One order
# replicates; the standby is cut off; the primary then places 40 orders
# (its sequence logs a new batch the standby never sees) and dies.  The
# promoted standby's first request must carry a tag of its own: without
# the floor it would reuse the id, and the tag, of one of the 40.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PaperBroker;
use OrderTest;

my ($old, $b) = OrderTest::setup('ids_old', init => { allows_streaming => 1 });
OrderTest::fast_limits($old, 100);
my $T = 'SET ROLE regress_trader;';

$old->backup('b');
my $new = PostgreSQL::Test::Cluster->new('ids_new');
$new->init_from_backup($old, 'b', has_streaming => 1);
$new->start;

my $first = $old->safe_psql('postgres', "$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 1)");
ok($old->poll_query_until('postgres', "SELECT state = 'placed' FROM trading.order_requests WHERE id = $first"),
	'the first order is placed');
$old->wait_for_catchup($new);

# ---- cut the standby off; the old leader places 40 more ----
$new->safe_psql('postgres', "ALTER SYSTEM SET primary_conninfo = ''; SELECT pg_reload_conf()");
ok($new->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_stat_wal_receiver'),
	'the standby no longer receives WAL');
$old->safe_psql('postgres',
	"$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, strategy => 'lost') FROM generate_series(1, 40)");
ok(OrderTest::wait_final($old, 60), 'the old leader sent all of them');
my $old_max = $old->safe_psql('postgres', 'SELECT max(id) FROM trading.order_requests');
cmp_ok($old_max, '>', $first + 33, "the old leader used ids past its sequence's last replicated batch (up to $old_max)");
$old->stop('immediate');

# ---- promotion: the new leader's first request ----
$new->promote;
ok($new->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading order sender'"),
	'the new leader runs the order sender');
my $timeline = $new->safe_psql('postgres',
	"SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int");
is($timeline, '2', 'the promoted standby is on timeline 2');
my $d = $new->safe_psql('postgres', "$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 7)");
cmp_ok($d, '>', 1_000_000_000, "its first request is numbered past the timeline's floor ($d)");
my $e = $new->safe_psql('postgres', "$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 8)");
is($e, $d + 1, 'and the next one follows it');
ok($new->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM trading.order_requests WHERE id IN ($d, $e) AND state = 'placed'"),
	'both are placed');
my $tags = OrderTest::broker_tags($b);
is(join(' ', map { scalar @{ $tags->{"TR$_"} // [] } } ($d, $e)), '1 1',
	'the broker holds one order under each new tag');
my @twice = grep { /^TR/ && @{ $tags->{$_} } > 1 } sort keys %$tags;
is("@twice", '', 'no tag is held twice at the broker');

done_testing();
