# WorkerTest: helpers shared by the broker worker's TAP tests
# (t/06*_worker*.pl and others), loaded with
#   use FindBin; use lib "$FindBin::RealBin/lib"; use WorkerTest;
#
#   WorkerTest::node($name, $broker, conf => "...")   a node whose worker
#       polls $broker (a PaperBroker) with short intervals, and the roles
#       regress_reader / regress_admin
#   WorkerTest::listen($node, $channel, $seconds)     start a psql that
#       LISTENs for $seconds; listen_output($h) waits and returns what it saw
#   WorkerTest::FixtureServer->start                   a tiny HTTP server
#       serving files: serve($path, $body, status => 200, ctype => ...)
#       makes GET $path (query ignored) answer $body from now on
package WorkerTest;

use strict;
use warnings;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Utils;
use TradingTest;

# a fixed test key: version 1, 64 hex digits
our $KEY_COMMAND = "echo 1:" . ('5a' x 32);
sub key_command { return $KEY_COMMAND; }

sub node
{
	my ($name, $broker, %o) = @_;
	my $url = $o{url} // ($broker ? $broker->url : 'http://127.0.0.1:9');
	my $node = TradingTest::node($name, %o, conf => broker_conf($url) . ($o{conf} // ''));
	return $node if $o{no_start} || (defined $o{create_extension} && !$o{create_extension});
	setup_roles($node);
	return $node;
}

# postgresql.conf lines for a node that talks to the broker at $url: the
# test server key and short timeouts
sub broker_conf
{
	my ($url) = @_;
	return qq{
trading.key_command = '$KEY_COMMAND'
trading.broker_url = '$url'
trading.broker_timeout = '2s'
trading.broker_connect_timeout = '1s'
trading.broker_max_backoff = '2s'
};
}

sub setup_roles
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
		CREATE ROLE regress_reader IN ROLE trading_reader;
		CREATE ROLE regress_admin IN ROLE trading_admin;
		UPDATE trading.poll_intervals SET interval_ms = CASE endpoint
			WHEN 'orders' THEN 300 WHEN 'quotes' THEN 1000
			WHEN 'holdings' THEN 2000 WHEN 'margins' THEN 2000 ELSE 1000 END;
	});
}

sub listen
{
	my ($node, $channel, $secs) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
		  "LISTEN $channel", '-c', "SELECT pg_sleep($secs)", '-c', 'SELECT 1' ],
		\$in, \$out, \$err);
	# let LISTEN take effect before the caller triggers anything
	sleep 1;
	return { h => $h, out => \$out, err => \$err };
}

sub listen_output
{
	my ($l) = @_;
	$l->{h}->finish;
	return ${ $l->{out} } . ${ $l->{err} };
}

package WorkerTest::FixtureServer;

sub start
{
	my ($class) = @_;
	my $dir = File::Temp::tempdir('fixture-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $sock = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64,
		ReuseAddr => 1, Proto => 'tcp') or die "listen: $!";
	my $port = $sock->sockport;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		$SIG{CHLD} = 'IGNORE';
		while (my $c = $sock->accept)
		{
			my $kid = fork();
			next if !defined $kid;
			if ($kid == 0)
			{
				serve_connection($c, $dir);
				POSIX::_exit(0);
			}
			close $c;
		}
		POSIX::_exit(0);
	}
	close $sock;
	return bless { pid => $pid, dir => $dir, port => $port }, $class;
}

sub url { return "http://127.0.0.1:$_[0]{port}"; }

sub file_of
{
	my ($dir, $path) = @_;
	$path =~ s/\?.*//;
	$path =~ s{[^A-Za-z0-9]}{_}g;
	return "$dir/$path";
}

sub slurp
{
	my ($f) = @_;
	open(my $fh, '<', $f) or return undef;
	local $/;
	my $s = <$fh>;
	return $s;
}

# keep-alive: answer requests on the connection until the client closes
sub serve_connection
{
	my ($c, $dir) = @_;
	$c->autoflush(1);
	while (defined(my $line = <$c>))
	{
		my ($method, $path) = $line =~ m{^(\S+) (\S+)};
		my $len = 0;
		while (defined(my $h = <$c>))
		{
			last if $h =~ /^\r?\n$/;
			$len = $1 if $h =~ /^Content-Length:\s*(\d+)/i;
		}
		read($c, my $discard, $len) if $len;
		my $f = file_of($dir, $path // '/');
		my $body = slurp("$f.body");
		my $status = slurp("$f.status") // '200';
		my $ctype = slurp("$f.ctype") // 'application/json';
		if (!defined $body)
		{
			$status = 404;
			$body = '{"status":"error","message":"Route not found","error_type":"GeneralException","data":null}';
		}
		print $c "HTTP/1.1 $status X\r\nContent-Type: $ctype\r\n"
		  . "Content-Length: " . length($body) . "\r\n\r\n$body";
	}
}

sub serve
{
	my ($self, $path, $body, %o) = @_;
	my $f = file_of($self->{dir}, $path);
	for my $part ([ 'status', $o{status} // 200 ],
		[ 'ctype', $o{ctype} // 'application/json' ], [ 'body', $body ])
	{
		open(my $fh, ">", "$f.$part->[0].tmp") or die;
		print $fh $part->[1];
		close $fh;
		rename("$f.$part->[0].tmp", "$f.$part->[0]") or die;
	}
}

sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'TERM', $self->{pid};
	waitpid($self->{pid}, 0);
	$self->{pid} = undef;
}

sub DESTROY { my ($self) = @_; local $?; $self->stop; }

1;
