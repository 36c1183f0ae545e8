# Metrics end to end: the stock prometheus-postgres-exporter (0.11) with
# monitoring/queries.yaml against a test cluster, scraped over HTTP; every
# metric of trading.metrics_catalog checked for type, help and labels, and
# every sample of trading.metrics found with the same value in the scrape;
# promtool check metrics on the scrape (and on trading.metrics_prometheus());
# no user-query load error and no query error in the exporter's log; a real
# Prometheus scraping the exporter evaluates every PromQL expression of
# docs/MONITORING.md and every alert rule of monitoring/alerts.yml, and the
# series and labels each expression selects exist.  Finally the label bound:
# SQL recordings past trading.metrics_max_labels are refused and counted.
use strict;
use warnings;
use Cwd qw(abs_path);
use FindBin;
use lib "$FindBin::RealBin/lib";
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(sleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $root = abs_path('.');
my $queries = "$root/monitoring/queries.yaml";
my $exporter_bin = '/usr/bin/prometheus-postgres-exporter';
my $prometheus_bin = '/usr/bin/prometheus';
for my $bin ($exporter_bin, $prometheus_bin, '/usr/bin/promtool')
{
	BAIL_OUT("$bin is missing (scripts/packages.txt)") unless -x $bin;
}

# ---- a node whose worker polls the paper broker -------------------------------
my $max_labels = 16;
my $b = PaperBroker->start(args => [ '--cash', 1000000 ]);
my $node = WorkerTest::node('metrics', $b,
	conf => "trading.metrics_max_labels = $max_labels\n"
	  . "trading.daily_loss_alert_threshold = 50000\n");
my $tmp = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', qq{
CREATE ROLE exporter LOGIN IN ROLE trading_reader, pg_monitor;
CREATE ROLE strategy LOGIN IN ROLE trading_analyst;
SET ROLE regress_admin;
SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
SELECT trading.rate_limit_set('metrics.test', 1, interval '1 hour');
RESET ROLE;
INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:INFY', 'ltp'), ('NSE:SBIN', 'ltp');
});
ok($node->poll_query_until('postgres',
	"SELECT bool_and(last_success IS NOT NULL) FROM trading.worker_status"),
	'the worker polled every endpoint of the paper broker');

# Trades: an open INFY position, SBIN closed with a profit, TCS with a loss.
$b->admin(POST => '/admin/price', instrument => 'NSE:SBIN', price => 100);
$b->admin(POST => '/admin/price', instrument => 'NSE:TCS', price => 3000);
$b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 10);
$b->place(tradingsymbol => 'SBIN', transaction_type => 'BUY', quantity => 5);
$b->place(tradingsymbol => 'TCS', transaction_type => 'BUY', quantity => 2);
$b->admin(POST => '/admin/price', instrument => 'NSE:SBIN', price => 110);
$b->admin(POST => '/admin/price', instrument => 'NSE:TCS', price => 2900);
$b->place(tradingsymbol => 'SBIN', transaction_type => 'SELL', quantity => 5);
$b->place(tradingsymbol => 'TCS', transaction_type => 'SELL', quantity => 2);
ok($node->poll_query_until('postgres', q{
SELECT count(*) FILTER (WHERE quantity = 0) = 2 AND count(*) FILTER (WHERE quantity <> 0) = 1
FROM trading.positions WHERE kind = 'net'}),
	'the worker brought the positions: one open, two closed');

# Faults: the broker fails portfolio requests with 503 for a while.
$b->admin(POST => '/admin/faults', fail_rate => 1, fail_codes => 503, classes => 'portfolio');
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM trading.worker_errors WHERE errors_total > 0"),
	'injected 503s show in trading.worker_errors');
$b->admin(POST => '/admin/faults', reset => 1);
ok($node->poll_query_until('postgres',
	"SELECT bool_and(consecutive_failures = 0) FROM trading.worker_status"),
	'the worker recovered');

# Strategies record through SQL; the rate limiter grants once, then refuses.
$node->safe_psql('postgres', q{
SELECT trading.record_api_request('strategy.quote', 0.004, 200);
SELECT trading.record_api_request('strategy.quote', 12, 0);
SELECT trading.record_exception('StrategyException');
SELECT trading.record_trade('BUY', 'COMPLETE');
SELECT trading.record_trade('SELL', 'REJECTED');
SELECT trading.rate_limit_try('metrics.test');
SELECT trading.rate_limit_try('metrics.test');
SELECT trading.rate_limit_try('metrics.test');
}, extra_params => [ '-U', 'strategy' ]);

# Pause polling so that nothing changes while the scrape is compared.
$node->safe_psql('postgres',
	'ALTER SYSTEM SET trading.broker_poll_enabled = off; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres',
	"SELECT bool_and(worker_state = 'paused') FROM trading.worker_status"),
	'polling paused');

my %sources;
for my $src (qw(worker_status worker_errors worker_http correlation_stats))
{
	$sources{$src} = $node->safe_psql('postgres',
		"SELECT to_regclass('trading.$src') IS NOT NULL") eq 't';
	note "trading.$src " . ($sources{$src} ? 'exists' : 'does not exist yet');
}

# ---- the exporter ------------------------------------------------------------
my $exporter_port = PostgreSQL::Test::Cluster::get_free_port();
my $exporter_log = "$tmp/exporter.log";
my $dsn = sprintf('host=%s port=%d user=exporter dbname=postgres sslmode=disable',
	$node->host, $node->port);
my $exporter = IPC::Run::start(
	[
		$exporter_bin, "--web.listen-address=127.0.0.1:$exporter_port",
		"--extend.query-path=$queries", '--disable-default-metrics',
		'--disable-settings-metrics', '--log.level=info'
	],
	'<', \undef, '>', $exporter_log, '2>', $exporter_log,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });

my $http = HTTP::Tiny->new(timeout => 10);
my $url = "http://127.0.0.1:$exporter_port/metrics";

sub scrape
{
	my $res = $http->get($url);
	return $res->{success} ? $res->{content} : undef;
}

my $scrape;
for (1 .. 100)
{
	$scrape = scrape();
	last if defined $scrape && $scrape =~ /^trading_total_pnl[ {]/m;
	sleep 0.2;
}
ok(defined $scrape && $scrape =~ /^trading_total_pnl[ {]/m,
	'the exporter serves the trading metrics over HTTP')
  or diag(slurp_file($exporter_log));

# Parse the exposition: families (type, help) and samples.
sub parse_exposition
{
	my ($text) = @_;
	my (%type, %help, @samples);
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^# TYPE (\S+) (\S+)$/) { $type{$1} = $2; }
		elsif ($line =~ /^# HELP (\S+) (.*)$/) { $help{$1} = $2; }
		elsif ($line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/)
		{
			my ($name, $lbl, $value) = ($1, $2 // '', $3);
			my %labels;
			while ($lbl =~ /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)
			{
				$labels{$1} = $2;
			}
			push @samples, { name => $name, labels => \%labels, value => $value };
		}
	}
	return (\%type, \%help, \@samples);
}

# Re-scrape now that every query ran at least once.
$scrape = scrape();
my ($type, $help, $samples) = parse_exposition($scrape);
slurp_file($exporter_log);    # make sure it is readable

# ---- every catalogue metric: type, help, labels -------------------------------
my %source_of = (
	trading_worker_ => 'worker_status',
	trading_worker_errors_total => 'worker_errors',
	trading_http_ => 'worker_http',
	trading_correlation_ => 'correlation_stats');

sub source_of
{
	my ($name) = @_;
	return $source_of{$name} if exists $source_of{$name};
	for my $prefix (sort { length($b) <=> length($a) } keys %source_of)
	{
		return $source_of{$prefix}
		  if $prefix =~ /_$/ && index($name, $prefix) == 0;
	}
	return undef;
}

my @catalog = map { [ split /\|/, $_, 4 ] } split /\n/,
  $node->safe_psql('postgres',
	q{SELECT name, type, array_to_string(labels, ','), help FROM trading.metrics_catalog ORDER BY name});
ok(@catalog >= 30, 'the catalogue lists the metrics');

my $yaml = slurp_file($queries);
for my $m (@catalog)
{
	my ($name, $mtype, $labels, $mhelp) = @$m;
	my $src = source_of($name);
	if (defined $src && !$sources{$src})
	{
		note "$name: trading.$src not installed yet, not expected in the scrape";
		next;
	}
	is($type->{$name}, $mtype, "$name has type $mtype");
	is($help->{$name}, $mhelp, "$name has the catalogue's help text");
	my $sample_re = $mtype eq 'histogram' ? qr/^\Q$name\E_(bucket|sum|count)$/ : qr/^\Q$name\E$/;
	my @mine = grep { $_->{name} =~ $sample_re } @$samples;
	ok(@mine > 0, "$name has samples");
	my $want = join(',', sort(split(/,/, $labels), 'server'));
	my @bad = grep {
		my %l = %{ $_->{labels} };
		delete $l{le} if $_->{name} =~ /_bucket$/;
		join(',', sort keys %l) ne $want
	} @mine;
	is(scalar @bad, 0, "$name samples carry exactly the labels {$want}");
}

# every exported trading metric is in the catalogue
my %in_catalog = map { $_->[0] => 1 } @catalog;
my @unknown = grep { /^trading_/ && !$in_catalog{$_} } keys %$type;
is_deeply(\@unknown, [], 'every trading metric of the scrape is in the catalogue');

# ---- values: the scrape agrees with trading.metrics ---------------------------
my @sql = map { [ split /\|/, $_, 3 ] } split /\n/,
  $node->safe_psql('postgres', q{
SELECT name,
       (SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM jsonb_each_text(labels)),
       CASE WHEN value = 'Infinity' THEN '+Inf' WHEN value = 'NaN' THEN 'NaN' ELSE value::text END
FROM trading.metrics
WHERE name !~ '(age_seconds|overdue_seconds)$'});
my %scraped;
for my $s (@$samples)
{
	my %l = %{ $s->{labels} };
	delete $l{server};
	$scraped{ $s->{name} . '|' . join(',', map { "$_=$l{$_}" } sort keys %l) } = $s->{value};
}
my @mismatch;
for my $row (@sql)
{
	my ($name, $labels, $value) = ($row->[0], $row->[1] // '', $row->[2]);
	my $got = $scraped{"$name|$labels"};
	push @mismatch, "$name {$labels}: sql $value, scrape " . ($got // 'missing')
	  unless defined $got && ($got eq $value || ($got =~ /^[-+0-9.e]+$/ && $value =~ /^[-+0-9.e]+$/ && abs($got - $value) <= 1e-9 * (1 + abs($value))));
}
is_deeply(\@mismatch, [], 'every sample of trading.metrics is in the scrape with the same value');

# spot checks: the recordings of the strategy, the worker's own, the
# business figures against the tables
is($scraped{'trading_api_request_duration_seconds_count|endpoint=strategy.quote'}, '2', 'histogram count of a SQL-recorded endpoint');
is($scraped{'trading_api_request_duration_seconds_bucket|endpoint=strategy.quote,le=0.005'}, '1', 'its bucket le=0.005');
is($scraped{'trading_api_request_duration_seconds_bucket|endpoint=strategy.quote,le=10'}, '1', 'its bucket le=10');
is($scraped{'trading_api_request_duration_seconds_bucket|endpoint=strategy.quote,le=+Inf'}, '2', 'its bucket le=+Inf');
is($scraped{'trading_api_requests_total|code=no_response,endpoint=strategy.quote'}, '1', 'its no_response count');
ok(($scraped{'trading_api_request_duration_seconds_count|endpoint=orders'} // 0) > 0,
	'the worker observes its requests (endpoint orders)');
ok(($scraped{'trading_api_requests_total|code=5xx,endpoint=positions'} // 0) > 0,
	'the injected 503s are counted as 5xx of endpoint positions');
my @worker_kinds = grep { /^trading_exceptions_total\|kind=/ && !/StrategyException/ && $scraped{$_} > 0 } keys %scraped;
ok(@worker_kinds > 0, 'the worker counts exceptions by kind: ' . join(', ', sort @worker_kinds));
is($node->safe_psql('postgres', q{
SELECT sum(total) FROM trading.metrics_exceptions WHERE kind <> 'StrategyException'}),
	$node->safe_psql('postgres', 'SELECT sum(errors_total) FROM trading.worker_errors'),
	'one exception per worker error');
is($scraped{'trading_exceptions_total|kind=StrategyException'}, '1', 'exceptions recorded by SQL');
is($scraped{'trading_trades_total|side=SELL,status=REJECTED'}, '1', 'trades by side and status');
my ($conns, $reqs) = split /\|/, $node->safe_psql('postgres',
	'SELECT connections_opened_total, requests_total FROM trading.worker_http');
ok($reqs > 0 && $conns > 0, "the worker opened $conns connections for $reqs requests");
is($scraped{'trading_http_requests_total|'}, $reqs, 'trading_http_requests_total');
is($scraped{'trading_http_connections_opened_total|'}, $conns, 'trading_http_connections_opened_total');
my $figures = $node->safe_psql('postgres', q{
SELECT sum(pnl)::float8, sum(m2m)::float8,
       (100.0 * count(*) FILTER (WHERE quantity = 0 AND pnl > 0) / count(*) FILTER (WHERE quantity = 0))::float8,
       count(*) FILTER (WHERE quantity <> 0)
FROM trading.positions WHERE kind = 'net'});
is(join('|', map { $scraped{"trading_${_}|"} } qw(total_pnl daily_pnl win_rate_percent active_positions)),
	$figures, "business figures agree with trading.positions ($figures)");
is($scraped{'trading_win_rate_percent|'}, '50', 'one win out of two closed positions');
is($scraped{'trading_daily_loss_alert_threshold|'}, '50000', 'loss threshold from the GUC');
my $orders = $node->safe_psql('postgres', "SELECT count(*) FROM trading.orders WHERE status = 'COMPLETE' AND transaction_type = 'SELL'");
is($scraped{'trading_broker_orders|side=SELL,status=COMPLETE'}, $orders, 'orders by side and status');
is($scraped{'trading_rate_limit_granted_total|endpoint=metrics.test'}, '1', 'rate limiter grants');
is($scraped{'trading_rate_limit_refused_total|endpoint=metrics.test'}, '2', 'rate limiter refusals');
ok(exists $scraped{'trading_rate_limit_wait_seconds_total|endpoint=metrics.test'}, 'rate limiter wait time');
is($scraped{'trading_worker_session_expired|endpoint=orders'}, '0', 'session not expired');
ok(exists $scraped{'trading_worker_state_info|endpoint=orders,session_state=active,worker_state=paused'},
	'worker and session state as labels');
ok((grep { /^trading_worker_errors_total\|endpoint=positions,error_type=/ } keys %scraped),
	'worker errors by endpoint and type');
ok(exists $scraped{'trading_correlation_queue_depth|'} && exists $scraped{'trading_correlation_dropped_total|'},
	'correlation queue depth and drops');
is($scraped{'trading_orders_sender_up|'}, '1', 'the order outbox metrics are scraped: the sender runs');
is($scraped{'trading_order_requests_in_state|error_type=,kind=place,state=verifying'}, '0',
	'every kind and state of order requests has a series, 0 when empty');
ok(exists $scraped{'trading_order_latency_seconds_bucket|le=0.001,phase=commit_to_ack'},
	'the order latency histogram');

# ---- exporter health ----------------------------------------------------------
my @load_errors = grep { $_->{name} eq 'pg_exporter_user_queries_load_error' } @$samples;
ok(@load_errors >= 1, 'the exporter reports pg_exporter_user_queries_load_error');
is(join(',', map { $_->{value} } @load_errors), join(',', map { '0' } @load_errors),
	'pg_exporter_user_queries_load_error is 0');
my @scrape_errors = grep { $_->{name} eq 'pg_exporter_last_scrape_error' } @$samples;
is(join(',', map { $_->{value} } @scrape_errors), '0', 'pg_exporter_last_scrape_error is 0');

# ---- promtool check metrics ---------------------------------------------------
sub promtool_check
{
	my ($text) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'promtool', 'check', 'metrics' ], '<', \$text, '>', \$out, '2>', \$err);
	return ($? >> 8, $out . $err);
}
my ($rc, $lint) = promtool_check($scrape);
is($rc, 0, 'promtool check metrics accepts the scrape');
is($lint, '', 'promtool check metrics prints no warning on the scrape');
($rc, $lint) = promtool_check($node->safe_psql('postgres', 'SELECT trading.metrics_prometheus()') . "\n");
is($rc, 0, 'promtool check metrics accepts trading.metrics_prometheus()');
is($lint, '', 'promtool check metrics prints no warning on trading.metrics_prometheus()');

# ---- Prometheus: docs' PromQL and the alert rules -----------------------------
my $prom_port = PostgreSQL::Test::Cluster::get_free_port();
mkdir "$tmp/prom";
PostgreSQL::Test::Utils::append_to_file("$tmp/prometheus.yml", qq{
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/monitoring/alerts.yml
scrape_configs:
  - job_name: trading-postgres
    static_configs:
      - targets: ["127.0.0.1:$exporter_port"]
});
my $prom_log = "$tmp/prometheus.log";
my $prom = IPC::Run::start(
	[
		$prometheus_bin, "--config.file=$tmp/prometheus.yml",
		"--storage.tsdb.path=$tmp/prom",
		"--web.listen-address=127.0.0.1:$prom_port"
	],
	'<', \undef, '>', $prom_log, '2>', $prom_log);
my $api = "http://127.0.0.1:$prom_port/api/v1";

sub api_get
{
	my ($path, %params) = @_;
	my $res = $http->get("$api/$path?" . $http->www_form_urlencode(\%params));
	return undef unless $res->{content};
	my $json = eval { JSON::PP::decode_json($res->{content}) };
	return $json;
}

my $ready = 0;
for (1 .. 150)
{
	my $r = api_get('query', query => 'count(trading_api_request_duration_seconds_count)');
	if ($r && $r->{status} eq 'success' && @{ $r->{data}{result} }
		&& $r->{data}{result}[0]{value}[1] >= 2)
	{
		$ready = 1;
		last;
	}
	sleep 0.2;
}
ok($ready, 'Prometheus scraped the exporter') or diag(slurp_file($prom_log));
sleep 3;    # a few more scrapes, so that rate() has points

# PromQL of docs/MONITORING.md: every ```promql block is one expression.
my $doc = slurp_file("$root/docs/MONITORING.md");
my @exprs;
while ($doc =~ /```promql\n(.*?)```/sg)
{
	(my $e = $1) =~ s/\s+$//;
	push @exprs, $e;
}
ok(@exprs >= 8, 'docs/MONITORING.md has PromQL expressions (' . scalar(@exprs) . ')');

for my $expr (@exprs)
{
	my $r = api_get('query', query => $expr);
	ok($r && $r->{status} eq 'success', "docs PromQL evaluates: $expr")
	  or diag(explain($r));

	# each selector's metric and label names exist in the scraped series
	my $clean = $expr;
	$clean =~ s/"(?:[^"\\]|\\.)*"/""/g;    # no identifiers inside strings
	my %grouping;
	while ($clean =~ /\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)
	{
		$grouping{$_} = 1 for grep { length } map { s/\s//gr } split /,/, $1;
	}
	my @selectors;
	while ($expr =~ /\b((?:trading|pg|up)\w*)(\{[^}]*\})?/g)
	{
		my ($metric, $matchers) = ($1, $2 // '');
		next if $metric eq 'up' && $matchers eq '' && $expr !~ /\bup\{/;
		push @selectors, [ $metric, $matchers ];
	}
	for my $sel (@selectors)
	{
		my ($metric, $matchers) = @$sel;
		my $src = source_of($metric);
		if (defined $src && !$sources{$src})
		{
			ok($in_catalog{$metric}, "docs: $metric is a catalogue metric (trading.$src not installed yet)");
			next;
		}
		my $s = api_get('series', 'match[]' => "$metric$matchers");
		my @series = $s && $s->{status} eq 'success' ? @{ $s->{data} } : ();
		ok(@series > 0, "docs: series $metric$matchers exist");
		my %labels_present = map { %$_ } @series;
		my @names = ($matchers =~ /(\w+)\s*(?:=~|!~|!=|=)/g);
		for my $l (@names, keys %grouping)
		{
			next if $l eq '__name__';
			ok(exists $labels_present{$l}, "docs: $metric has label $l");
		}
	}
}

# The alert rules evaluate without error against the real series.
my $rules;
for (1 .. 50)
{
	$rules = api_get('rules');
	last if $rules && $rules->{status} eq 'success'
	  && !grep { !defined $_->{lastEvaluation} || $_->{lastEvaluation} =~ /^0001/ }
	  map { @{ $_->{rules} } } @{ $rules->{data}{groups} };
	sleep 0.2;
}
my @rules = map { @{ $_->{rules} } } @{ $rules->{data}{groups} };
ok(@rules >= 10, 'Prometheus loaded the alert rules');
for my $rule (@rules)
{
	is($rule->{health}, 'ok', "alert $rule->{name} evaluates without error")
	  or diag($rule->{lastError});
}

$prom->kill_kill;

# ---- the broker session expires: the gauge says so --------------------------------
$node->safe_psql('postgres',
	'ALTER SYSTEM RESET trading.broker_poll_enabled; SELECT pg_reload_conf()');
$b->admin(POST => '/admin/token', expire => 1);
ok($node->poll_query_until('postgres',
	"SELECT bool_and(session_state = 'expired') FROM trading.worker_status"),
	'the worker sees the session expire');
$scrape = scrape();
my @expired = ($scrape =~ /^trading_worker_session_expired\{[^}]*\} (\S+)$/mg);
ok(@expired >= 6 && !grep({ $_ ne '1' } @expired),
	'trading_worker_session_expired is 1 on every endpoint');

# ---- the label bound -------------------------------------------------------------
my $used = $node->safe_psql('postgres',
	'SELECT count(*) FROM trading.metrics_api_request_duration');
for my $i ($used + 1 .. $max_labels)
{
	$node->safe_psql('postgres', "SELECT trading.record_api_request('fill$i', 0.1)");
}
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT trading.record_api_request('one.too.many', 0.1)",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'a label past trading.metrics_max_labels is refused');
like($stderr, qr/54000: too many distinct endpoints for metric api_requests/,
	'with SQLSTATE 54000 and a clear message');
# known labels still record; the refusal is counted
$node->safe_psql('postgres', "SELECT trading.record_api_request('strategy.quote', 0.1)");
is($node->safe_psql('postgres', q{
SELECT (SELECT request_duration_seconds_count FROM trading.metrics_api_request_duration WHERE endpoint = 'strategy.quote')
    || ',' || (SELECT count(*) FROM trading.metrics_api_request_duration)
    || ',' || (SELECT total FROM trading.metrics_label_overflow WHERE metric = 'api_requests')}),
	"3,$max_labels,1", 'known labels still record, nothing else was added, the refusal is counted');
$scrape = scrape();
like($scrape, qr/^trading_metrics_label_overflow_total\{[^}]*metric="api_requests"[^}]*\} 1$/m,
	'the exporter shows the overflow');

# ---- no query error in the exporter's log -------------------------------------
my @log_errors = grep { /level=error|err=|Error running query|Unparseable|Missing column/i }
  split /\n/, slurp_file($exporter_log);
is_deeply(\@log_errors, [], 'the exporter logged no query error');

# ---- counters are monotonic until a restart ---------------------------------------
$node->restart;
is($node->safe_psql('postgres',
	"SELECT count(*) FROM trading.metrics_api_request_duration WHERE endpoint = 'strategy.quote'"),
	'0', 'counters start from zero after a restart');

$exporter->kill_kill;
$node->stop;

# ---- the worker past the label bound: its C API folds into "_overflow" ----------
# The worker polls six endpoints; with room for four, the last two to be
# registered are counted under "_overflow", and every such request in
# trading_metrics_label_overflow_total.
my $small = WorkerTest::node('metrics_small', $b, conf => "trading.metrics_max_labels = 4\n");
$small->safe_psql('postgres', qq{
SET ROLE regress_admin;
SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
});
$b->admin(POST => '/admin/token', access_token => $PaperBroker::TOKEN);
ok($small->poll_query_until('postgres', q{
SELECT count(*) = 5 AND count(*) FILTER (WHERE endpoint = '_overflow') = 1
FROM trading.metrics_api_request_duration}),
	'the worker registers four endpoints and folds the rest into "_overflow"')
  or diag($small->safe_psql('postgres', 'SELECT * FROM trading.metrics_api_request_duration'));
ok($small->poll_query_until('postgres', q{
SELECT (SELECT total FROM trading.metrics_label_overflow WHERE metric = 'api_requests')
     = (SELECT request_duration_seconds_count FROM trading.metrics_api_request_duration WHERE endpoint = '_overflow')
   AND (SELECT total FROM trading.metrics_label_overflow WHERE metric = 'api_requests') > 0}),
	'every folded request is counted in trading_metrics_label_overflow_total');
$small->safe_psql('postgres',
	'ALTER SYSTEM SET trading.broker_poll_enabled = off; SELECT pg_reload_conf()');
ok($small->poll_query_until('postgres', q{
SELECT sum(request_duration_seconds_count) = (SELECT sum(requests_total) FROM trading.worker_status)
FROM trading.metrics_api_request_duration}),
	'no request is lost: once polling pauses, the histograms count every request of the worker');
$small->stop;
$b->stop;
done_testing();
