# Paper broker fault injection: each switch, set through the admin endpoint
# and on the command line, produces its misbehaviour and is counted.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);
use PaperBroker;

my $b = PaperBroker->start;

sub faults { $b->admin(POST => '/admin/faults', reset => 1, @_); }
sub profile { return $b->api(GET => '/user/profile'); }
sub injected { return $b->stats->{injected}{ $_[0] }; }

my $normal = profile();
is($normal->{status}, 200, 'no faults: 200');

# --- 5xx ---
for my $code (500, 502, 503, 504)
{
	faults(fail_rate => 1, fail_codes => $code);
	my $r = profile();
	is($r->{status}, $code, "fail_codes=$code: HTTP $code");
	is($r->{json}{status}, 'error', "fail_codes=$code: error envelope");
	ok($r->{json}{error_type}, "fail_codes=$code: has error_type $r->{json}{error_type}");
}
is(injected('fail'), 4, 'the 5xx are counted');
faults(fail_rate => 1, fail_codes => '500,502,503,504');
my %seen;
$seen{ profile()->{status} }++ for 1 .. 40;
ok(keys %seen >= 2 && !grep({ !/^50[0234]$/ } keys %seen), 'a list of codes: several of them, no others');

# --- injected 429 ---
faults(rate429 => 1);
my $r = profile();
is($r->{status}, 429, 'rate429: HTTP 429');
is($r->{json}{error_type}, 'NetworkException', 'rate429: NetworkException');
is($r->{json}{message}, 'Too many requests', 'rate429: message');
my $s = $b->stats;
is($s->{http_429}{injected}, 1, '429 counted as injected');
is($s->{http_429}{rate_limit}, 0, '... not as a rate-limit refusal');

# --- status error with HTTP 200 ---
faults(error200_rate => 1);
$r = profile();
is($r->{status}, 200, 'error200: HTTP 200');
is($r->{json}{status}, 'error', 'error200: status error');
is($r->{json}{data}, undef, 'error200: data null');

# --- HTML error page ---
faults(html_rate => 1);
$r = profile();
is($r->{status}, 502, 'html: HTTP 502 by default');
like($r->{headers}{'content-type'}, qr{^text/html}, 'html: text/html');
like($r->{content}, qr{<html>.*502 Bad Gateway}s, 'html: an HTML page');
faults(html_rate => 1, html_status => 400);
is(profile()->{status}, 400, 'html_status=400');

# --- truncated JSON ---
faults(truncate_rate => 1);
$r = profile();
is($r->{status}, 200, 'truncate: HTTP 200');
ok(!defined $r->{json}, 'truncate: body is not valid JSON');
ok(length($r->{content}) < length($normal->{content}), 'truncate: shorter body');
is($r->{content}, substr($normal->{content}, 0, length $r->{content}), 'truncate: a prefix of the real body');

# --- malformed JSON ---
faults(malformed_rate => 1);
$r = profile();
is($r->{status}, 200, 'malformed: HTTP 200');
like($r->{headers}{'content-type'}, qr{^application/json}, 'malformed: claims JSON');
ok(!defined $r->{json}, 'malformed: body does not parse');

# --- dropped connection ---
faults(drop_rate => 1);
$r = profile();
is($r->{status}, 599, 'drop: the client sees no response');
ok(injected('drop') >= 1, 'drop: counted');

# --- latency ---
faults(latency_ms => 400);
my $t0 = time;
$r = profile();
my $took = time - $t0;
is($r->{status}, 200, 'latency: still 200');
ok($took >= 0.39, "latency: took at least 400 ms ($took s)");
faults(latency_ms => 100, latency_jitter_ms => 200);
$t0 = time;
profile();
ok(time - $t0 >= 0.099, 'latency + jitter: at least the fixed part');
ok(injected('latency') >= 2, 'latency counted');

# --- fault classes ---
faults(fail_rate => 1, fail_codes => 503, classes => 'quote');
is($b->api(GET => '/quote/ltp', query => { i => 'NSE:INFY' })->{status}, 503, 'classes=quote: quotes fail');
is(profile()->{status}, 200, 'classes=quote: others do not');

# --- a share, not all ---
faults(fail_rate => 0.5, fail_codes => 500);
my $fails = grep { profile()->{status} == 500 } 1 .. 200;
ok($fails > 40 && $fails < 160, "fail_rate=0.5: $fails of 200 failed");

# --- admin validation and read-back ---
my $bad = $b->admin(POST => '/admin/faults', fail_rate => 2, _may_fail => 1);
is($bad->{status}, 400, 'admin rejects a rate above 1');
$bad = $b->admin(POST => '/admin/faults', fail_codes => 'abc', _may_fail => 1);
is($bad->{status}, 400, 'admin rejects bad codes');
faults();
my $f = $b->admin(GET => '/admin/faults')->{json}{data};
is($f->{fail_rate}, 0, 'reset=1 restores the command-line faults');
is(profile()->{status}, 200, 'no faults again: 200');
is($b->stop, 0, 'clean exit');

# --- command-line flags ---
my $c = PaperBroker->start(args => [ '--fail-rate', 1, '--fail-codes', 502, '--fault-classes', 'user' ]);
is($c->api(GET => '/user/profile')->{status}, 502, '--fail-rate 1 --fail-codes 502');
is($c->api(GET => '/orders')->{status}, 200, '--fault-classes user spares /orders');
is_deeply($c->admin(GET => '/admin/faults')->{json}{data}{fail_codes}, [502], 'admin shows flag values');
$c->stop;
for my $flag ([ '--rate429', 429 ], [ '--html-rate', 502 ], [ '--error200-rate', 200 ])
{
	my $d = PaperBroker->start(args => [ $flag->[0], 1 ]);
	my $res = $d->api(GET => '/orders');
	is($res->{status}, $flag->[1], "$flag->[0] 1: HTTP $flag->[1]");
	isnt(($res->{json} // {})->{status} // '', 'success', "$flag->[0] 1: not a success");
	$d->stop;
}
my $d = PaperBroker->start(args => [ '--drop-rate', 1 ]);
is($d->api(GET => '/orders')->{status}, 599, '--drop-rate 1: no response');
$d->stop;
$d = PaperBroker->start(args => [ '--truncate-rate', 1 ]);
ok(!defined $d->api(GET => '/orders')->{json}, '--truncate-rate 1: bad JSON');
$d->stop;
$d = PaperBroker->start(args => [ '--malformed-rate', 1 ]);
ok(!defined $d->api(GET => '/orders')->{json}, '--malformed-rate 1: bad JSON');
$d->stop;
$d = PaperBroker->start(args => [ '--latency-ms', 300 ]);
$t0 = time;
$d->api(GET => '/orders');
ok(time - $t0 >= 0.29, '--latency-ms 300: slow');
$d->stop;
$d = PaperBroker->start(args => [ '--fail-rate', 7 ], may_fail => 1);
ok($d->{exit} && $d->{start_error} =~ /rate/, 'a bad fault flag stops start-up');

done_testing();
