# PaperBroker: start and drive a paper broker from a TAP test.
#
#   use FindBin; use lib "$FindBin::RealBin/lib";
#   use PaperBroker;
#   my $b = PaperBroker->start(args => ['--seed', 7]);
#   my $r = $b->api(GET => '/user/profile');         # {status, json, content, headers}
#   my $o = $b->api(POST => '/orders/regular', form => {tradingsymbol => 'INFY', ...});
#   $b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1000);
#   my $stats = $b->stats;                             # /admin/stats data
#   $b->stop;                                          # SIGTERM, returns exit status
#
# The binary is $ENV{PAPER_BROKER} // 'broker/paper-broker'; the broker
# listens on free loopback ports (--port 0) and writes them to files in a
# private temp dir, with its request log.  By default the price walk is
# manual (--tick-ms 0) and rate limits are off (--no-rate-limit); pass
# ratelimit => 1 to keep Kite's limits, tick => N for a timer.  Later args
# override earlier ones.
package PaperBroker;

use strict;
use warnings;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(usleep);

our $API_KEY = 'paper_api_key';
our $API_SECRET = 'paper_api_secret';
our $TOKEN = 'paper_access_token';

sub binary { return $ENV{PAPER_BROKER} // 'broker/paper-broker'; }

sub mocks { return ($ENV{TRADING_SHARED} // '../shared') . '/kite-mocks'; }

sub start
{
	my ($class, %o) = @_;
	my $dir = tempdir('paper-broker-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my @args = (
		'--port' => 0, '--admin-port' => 0,
		'--port-file' => "$dir/port", '--admin-port-file' => "$dir/admin_port",
		'--log' => "$dir/requests.log",
		'--tick-ms' => $o{tick} // 0);
	push @args, '--no-rate-limit' unless $o{ratelimit};
	push @args, '--admin-token' => $o{admin_token} if defined $o{admin_token};
	push @args, @{ $o{args} // [] };

	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>', "$dir/stdout") or POSIX::_exit(126);
		open(STDERR, '>', "$dir/stderr") or POSIX::_exit(126);
		exec(binary(), @args) or POSIX::_exit(127);
	}
	my $self = bless {
		pid => $pid, dir => $dir, key => $API_KEY, token => $TOKEN,
		http => HTTP::Tiny->new(keep_alive => 1, timeout => 60),
		tls => $o{tls}, admin_token => $o{admin_token},
	}, $class;
	for (1 .. 600)
	{
		last if -s "$dir/port" && -s "$dir/admin_port";
		if (waitpid($pid, POSIX::WNOHANG()) == $pid)
		{
			$self->{pid} = undef;
			$self->{exit} = $?;
			$self->{start_error} = slurp("$dir/stderr");
			return $self if $o{may_fail};
			die "paper-broker exited at start-up: $self->{start_error}";
		}
		usleep(50_000);
	}
	die "paper-broker did not start" unless -s "$dir/port";
	chomp($self->{port} = slurp("$dir/port"));
	chomp($self->{admin_port} = slurp("$dir/admin_port"));
	return $self;
}

sub slurp
{
	my ($path) = @_;
	open(my $fh, '<', $path) or return '';
	local $/;
	my $s = <$fh>;
	return $s // '';
}

sub port { return $_[0]{port}; }
sub admin_port { return $_[0]{admin_port}; }
sub dir { return $_[0]{dir}; }
sub log_text { return slurp("$_[0]{dir}/requests.log"); }
sub url { my ($s) = @_; return ($s->{tls} ? 'https' : 'http') . "://127.0.0.1:$s->{port}"; }

sub decode
{
	my ($res) = @_;
	$res->{json} = eval { JSON::PP->new->decode($res->{content}) }
	  if defined $res->{content} && length $res->{content};
	return $res;
}

# api(METHOD => PATH, form => {..} or [..], query => {..} or [..],
#     auth => 0 | 'token key:tok', headers => {..}, version => 0)
sub api
{
	my ($self, $method, $path, %o) = @_;
	my %h = ('X-Kite-Version' => '3');
	delete $h{'X-Kite-Version'} if defined $o{version} && !$o{version};
	if (!defined $o{auth}) { $h{Authorization} = "token $self->{key}:$self->{token}"; }
	elsif ($o{auth}) { $h{Authorization} = $o{auth}; }
	%h = (%h, %{ $o{headers} // {} });
	my $url = $self->url . $path;
	$url .= '?' . $self->{http}->www_form_urlencode($o{query}) if $o{query};
	my %req = (headers => \%h);
	if ($o{form})
	{
		$req{content} = $self->{http}->www_form_urlencode($o{form});
		$h{'Content-Type'} = 'application/x-www-form-urlencoded';
	}
	return decode($self->{http}->request($method, $url, \%req));
}

# admin(METHOD => PATH, key => value, ...): parameters as a form body
sub admin
{
	my ($self, $method, $path, %params) = @_;
	my $url = "http://127.0.0.1:$self->{admin_port}$path";
	my %req = (headers => {});
	my $may_fail = delete $params{_may_fail};
	$req{headers}{'X-Admin-Token'} = $self->{admin_token} if defined $self->{admin_token};
	if (%params)
	{
		$req{content} = HTTP::Tiny->www_form_urlencode(\%params);
		$req{headers}{'Content-Type'} = 'application/x-www-form-urlencoded';
	}
	my $res = decode(HTTP::Tiny->new(timeout => 30)->request($method, $url, \%req));
	die "admin $method $path failed: $res->{status} $res->{content}"
	  unless $res->{status} == 200 || $may_fail;
	return $res;
}

sub stats { return $_[0]->admin(GET => '/admin/stats')->{json}{data}; }

# place an order; returns the order id (dies unless HTTP 200)
sub place
{
	my ($self, %form) = @_;
	my $variety = delete $form{variety} // 'regular';
	%form = (exchange => 'NSE', product => 'MIS', order_type => 'MARKET', %form);
	my $r = $self->api(POST => "/orders/$variety", form => \%form);
	die "place failed: $r->{status} $r->{content}" unless $r->{status} == 200;
	return $r->{json}{data}{order_id};
}

sub order
{
	my ($self, $id) = @_;
	my ($o) = grep { $_->{order_id} eq $id } @{ $self->api(GET => '/orders')->{json}{data} };
	return $o;
}

sub stop
{
	my ($self) = @_;
	return $self->{exit} unless $self->{pid};
	kill 'TERM', $self->{pid};
	waitpid($self->{pid}, 0);
	$self->{exit} = $?;
	$self->{pid} = undef;
	return $self->{exit};
}

sub DESTROY
{
	my ($self) = @_;
	local $?;
	$self->stop if $self->{pid};
}

1;
