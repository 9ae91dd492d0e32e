package Test::Vetting::Redis;

# A tiny RESP2 client, and the few encoders a fake Redis server needs.
#
#   my $r = Test::Vetting::Redis->new(port => $p, auth => ['user', 'pw']);
#   my $v = $r->cmd('GET', $key);         # binary-safe argv
#   my @v = $r->pipeline(['INCR', 'a'], ['GET', 'a']);
#   $r->close;
#
# Replies: status ("+OK") and bulk strings as plain scalars (bytes),
# integers as numbers, nil bulk/array as undef, arrays as array refs,
# errors as Test::Vetting::Redis::Error objects (they stringify to the
# message, "ERR unknown command ..."; test with is_error($v)). Errors
# inside arrays (EXEC) are objects too. A closed connection, a timeout
# or a protocol error dies.
#
# Server side, for fake Redis daemons run with $t->run_tcp:
#
#   my $c = Test::Vetting::Redis->from_socket($sock);
#   while (my $argv = $c->read_command) { ... }    # undef on EOF
#   print $sock resp_bulk('x'), resp_int(1), resp_status('OK'),
#       resp_error('ERR no'), resp_nil(), resp_array(resp_bulk('a'));

use strict;
use warnings;

use Exporter qw(import);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

our @EXPORT_OK = qw(is_error resp_status resp_error resp_int resp_bulk
    resp_nil resp_array encode_command);


sub new {
    my ($class, %o) = @_;

    my $host = $o{host} // '127.0.0.1';
    my $timeout = $o{timeout} // 5 * _mult();

    my $sock = IO::Socket::INET->new(
        PeerAddr => $host,
        PeerPort => $o{port},
        Proto    => 'tcp',
        Timeout  => $timeout,
    ) or die "redis: cannot connect to $host:$o{port}: $!\n";

    my $self = $class->from_socket($sock, timeout => $timeout);

    if ($o{auth} && @{ $o{auth} }) {
        my $r = $self->cmd('AUTH', @{ $o{auth} });
        die "redis: AUTH failed: $r\n" if is_error($r);
    }

    return $self;
}


sub from_socket {
    my ($class, $sock, %o) = @_;

    binmode $sock;

    return bless {
        sock    => $sock,
        buf     => '',
        timeout => $o{timeout} // 5 * _mult(),
    }, $class;
}


sub cmd {
    my ($self, @argv) = @_;

    $self->_write(encode_command(@argv));

    return $self->read_reply;
}


sub pipeline {
    my ($self, @cmds) = @_;

    $self->_write(join '', map { encode_command(@$_) } @cmds);

    return map { $self->read_reply } @cmds;
}


sub close {
    my ($self) = @_;

    CORE::close($self->{sock}) if $self->{sock};
    $self->{sock} = undef;
}


sub socket { $_[0]{sock} }


sub read_reply {
    my ($self) = @_;

    my $line = $self->_line;
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));

    return $rest if $type eq '+';
    return Test::Vetting::Redis::Error->new($rest) if $type eq '-';
    return 0 + $rest if $type eq ':';

    if ($type eq '$') {
        return undef if $rest < 0;
        my $data = $self->_bytes($rest + 2);
        return substr($data, 0, $rest);
    }

    if ($type eq '*') {
        return undef if $rest < 0;
        return [map { $self->read_reply } 1 .. $rest];
    }

    die "redis: protocol error: unexpected line \"$line\"\n";
}


# one client command as an array ref of byte strings; inline commands
# ("PING\r\n") are split on blanks; undef when the peer closed
sub read_command {
    my ($self) = @_;

    my $argv = eval {
        my $line = $self->_line;
        return [split ' ', $line] if $line !~ /^\*/;

        my $n = substr($line, 1);
        [map { $self->_bulk_arg } 1 .. $n];
    };

    return $argv;
}


sub _bulk_arg {
    my ($self) = @_;

    my $line = $self->_line;
    die "redis: protocol error: \"$line\"\n" if $line !~ /^\$(\d+)$/;

    return substr($self->_bytes($1 + 2), 0, $1);
}


sub _line {
    my ($self) = @_;

    my $i;
    $self->_fill until ($i = index($self->{buf}, "\r\n")) >= 0;

    my $line = substr($self->{buf}, 0, $i);
    substr($self->{buf}, 0, $i + 2) = '';

    return $line;
}


sub _bytes {
    my ($self, $n) = @_;

    $self->_fill while length $self->{buf} < $n;

    return substr($self->{buf}, 0, $n, '');
}


sub _fill {
    my ($self) = @_;

    my $sock = $self->{sock} or die "redis: connection closed\n";
    IO::Select->new($sock)->can_read($self->{timeout})
        or die "redis: timed out waiting for a reply\n";

    my $n = sysread $sock, $self->{buf}, 65536, length $self->{buf};
    die "redis: read failed: $!\n" if !defined $n;
    die "redis: connection closed\n" if $n == 0;
}


sub _write {
    my ($self, $data) = @_;

    my $sock = $self->{sock} or die "redis: connection closed\n";
    local $SIG{PIPE} = 'IGNORE';

    while (length $data) {
        my $n = syswrite $sock, $data;
        die "redis: write failed: $!\n" if !defined $n;
        substr($data, 0, $n) = '';
    }
}


sub _mult { $ENV{TEST_VETTING_TIMEOUT_MULT} || 1 }


sub _bytes_of {
    my ($v) = @_;

    $v = "$v";
    utf8::encode($v) if utf8::is_utf8($v);

    return $v;
}


sub encode_command {
    my @argv = map { _bytes_of($_) } @_;

    return '*' . @argv . "\r\n"
        . join '', map { '$' . length($_) . "\r\n$_\r\n" } @argv;
}


sub is_error { ref $_[0] && ref $_[0] eq 'Test::Vetting::Redis::Error' }

sub resp_status { "+$_[0]\r\n" }
sub resp_error  { "-$_[0]\r\n" }
sub resp_int    { ":$_[0]\r\n" }
sub resp_nil    { "\$-1\r\n" }

sub resp_bulk {
    return resp_nil() if !defined $_[0];
    my $v = _bytes_of($_[0]);
    return '$' . length($v) . "\r\n$v\r\n";
}

# takes already encoded elements; resp_array(undef) is a nil array
sub resp_array {
    return "*-1\r\n" if @_ == 1 && !defined $_[0];
    return '*' . @_ . "\r\n" . join '', @_;
}


package Test::Vetting::Redis::Error;

use overload
    '""'     => sub { $_[0]{message} },
    'bool'   => sub { 1 },
    fallback => 1;

sub new     { bless { message => $_[1] }, $_[0] }
sub message { $_[0]{message} }

1;
