package Test::Vetting::HTTP;

# HTTP client for the tests: sends exactly the bytes it is given to
# 127.0.0.1:$port and reads until the peer closes (or a timeout).
#
#   my $r = http($port, "GET / HTTP/1.0\r\n\r\n", timeout => 5);
#   my $r = http($port, [["GET / HT", 0.2], "TP/1.0\r\n\r\n"]);  # pieces
#   my $r = http_get($port, '/fhir/r4/Patient/1', Authorization => '...');
#   my $r = http_post($port, '/token', $form, 'Content-Type' => '...');
#   my $r = http_req($port, 'PUT', '/x', headers => [...], body => '...',
#       version => '1.1', timeout => 3);
#   my @r = http_burst($port, [$raw1, $raw2, ...]);
#
# The helpers send HTTP/1.1 with "Host: localhost" and "Connection:
# close" unless those headers are given. A raw request should carry
# "Connection: close" (or be HTTP/1.0), since reading ends at close.
#
# The answer is a Test::Vetting::Response (a blessed hash):
#   status, reason, version   undef status when nothing parseable came
#   headers      { lower-case name => value }, repeats joined with ", "
#   header_list  { lower-case name => [values] }
#   body         de-chunked when the response was chunked
#   raw          the bytes as received
#   incomplete   1 when the body is shorter than announced
#   timed_out    1 when the peer did not close in time
#   error        the connect/write error, if any
# and methods status, header($name), header_all($name), body, raw, json.

use strict;
use warnings;

use Exporter qw(import);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

our @EXPORT = qw(http http_get http_post http_req http_burst
    parse_response);


sub mult { $ENV{TEST_VETTING_TIMEOUT_MULT} || 1 }


sub http {
    my ($port, $raw, %o) = @_;

    my $deadline = time + ($o{timeout} // 10) * mult();
    local $SIG{PIPE} = 'IGNORE';

    my $sock = _connect($port, $deadline)
        or return _failed("connect to port $port: $!");

    my $first = ref $raw ? join '', map { ref $_ ? $_->[0] : $_ } @$raw
                         : $raw;
    my $head = $first =~ /^HEAD /;

    _send($sock, $raw)
        or return _failed("write to port $port: $!");

    my ($buf, $timed_out) = _read_all($sock, $deadline);
    close $sock;

    my $r = parse_response($buf, head => $head);
    $r->{timed_out} = 1 if $timed_out;

    return $r;
}


sub http_get {
    my ($port, $uri, %headers) = @_;

    return http_req($port, 'GET', $uri, headers => [%headers]);
}


sub http_post {
    my ($port, $uri, $body, %headers) = @_;

    return http_req($port, 'POST', $uri, headers => [%headers],
        body => $body);
}


sub http_req {
    my ($port, $method, $uri, %o) = @_;

    return http($port, request($method, $uri, %o),
        timeout => $o{timeout});
}


# the bytes of one request; headers as a hash ref or a list of pairs
# (array ref), a value may be an array ref for repeated headers
sub request {
    my ($method, $uri, %o) = @_;

    my $version = $o{version} // '1.1';
    my @h = ref $o{headers} eq 'HASH' ? %{ $o{headers} }
          : @{ $o{headers} // [] };
    my $body = $o{body};

    my %have;
    my $text = "$method $uri HTTP/$version\r\n";

    while (my ($name, $value) = splice @h, 0, 2) {
        $have{ lc $name } = 1;
        for my $v (ref $value ? @$value : $value) {
            $text .= "$name: $v\r\n";
        }
    }

    $text .= "Host: localhost\r\n" if !$have{host};
    $text .= "Connection: close\r\n" if !$have{connection};

    if (defined $body && !$have{'content-length'}
        && !$have{'transfer-encoding'})
    {
        $text .= 'Content-Length: ' . length($body) . "\r\n";
    }

    return $text . "\r\n" . ($body // '');
}


# connects every request first, then writes them all, then reads them
# all, so that they reach the server at the same moment
sub http_burst {
    my ($port, $raws, %o) = @_;

    my $deadline = time + ($o{timeout} // 10) * mult();
    local $SIG{PIPE} = 'IGNORE';

    my @socks = map { _connect($port, $deadline) } @$raws;
    my (@bufs, @errors);

    for my $i (0 .. $#socks) {
        if (!$socks[$i]) {
            $errors[$i] = "connect to port $port failed";
            next;
        }

        if (!_send($socks[$i], $raws->[$i])) {
            $errors[$i] = "write to port $port: $!";
        }
    }

    my %open = map { $_ => $socks[$_] } grep { $socks[$_] } 0 .. $#socks;
    my %index = map { ("$socks[$_]" => $_) } keys %open;
    my $sel = IO::Select->new(values %open);

    while ($sel->count) {
        my $left = $deadline - time;
        last if $left <= 0;

        for my $s ($sel->can_read($left)) {
            my $i = $index{"$s"};
            my $n = sysread $s, $bufs[$i], 65536, length($bufs[$i] // '');

            if (!$n) {
                $sel->remove($s);
                close $s;
                delete $open{$i};
            }
        }
    }

    my @res;

    for my $i (0 .. $#$raws) {
        if ($errors[$i] && !defined $bufs[$i]) {
            push @res, _failed($errors[$i]);
            next;
        }

        my $head = $raws->[$i] =~ /^HEAD /;
        my $r = parse_response($bufs[$i] // '', head => $head);
        $r->{timed_out} = 1 if $open{$i};
        push @res, $r;
    }

    close $_ for values %open;

    return @res;
}


sub parse_response {
    my ($raw, %o) = @_;

    my $r = bless { raw => $raw, headers => {}, header_list => {} },
        'Test::Vetting::Response';

    return $r if $raw !~ /\r?\n\r?\n/;

    my $head = substr($raw, 0, $-[0]);
    my $rest = substr($raw, $+[0]);
    my ($line, @lines) = split /\r?\n/, $head;

    return $r if $line !~ m{^HTTP/(\d\.\d) (\d{3})(?: (.*))?$};
    @$r{qw(version status reason)} = ($1, $2, $3 // '');

    for (@lines) {
        next if !/^([^:]+):[ \t]*(.*?)[ \t]*$/;
        push @{ $r->{header_list}{ lc $1 } }, $2;
    }

    for my $name (keys %{ $r->{header_list} }) {
        $r->{headers}{$name} = join ', ', @{ $r->{header_list}{$name} };
    }

    my $h = $r->{headers};

    if ($o{head} || $r->{status} =~ /^(1..|204|304)$/) {
        $r->{body} = '';

    } elsif (($h->{'transfer-encoding'} // '') =~ /chunked/i) {
        ($r->{body}, my $done) = dechunk($rest);
        $r->{incomplete} = 1 if !$done;

    } elsif (defined $h->{'content-length'}) {
        my $len = $h->{'content-length'};
        $r->{body} = substr($rest, 0, $len);
        $r->{incomplete} = 1 if length $rest < $len;

    } else {
        $r->{body} = $rest;
    }

    return $r;
}


# returns the decoded body and whether the last chunk was seen
sub dechunk {
    my ($data) = @_;

    my $body = '';

    while ($data =~ /\A([0-9a-fA-F]+)[^\r\n]*\r?\n/) {
        my $size = hex $1;
        substr($data, 0, $+[0]) = '';

        return ($body, 1) if $size == 0;
        return ($body . $data, 0) if length $data < $size;

        $body .= substr($data, 0, $size, '');
        $data =~ s/\A\r?\n//;
    }

    return ($body, 0);
}


sub _connect {
    my ($port, $deadline) = @_;

    my $left = $deadline - time;
    $left = 0.1 if $left < 0.1;

    return IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => $left,
    );
}


# a string, or an array ref of pieces: "bytes" or ["bytes", delay]
sub _send {
    my ($sock, $raw) = @_;

    for my $piece (ref $raw ? @$raw : $raw) {
        my ($data, $delay) = ref $piece ? @$piece : ($piece, 0);

        while (length $data) {
            my $n = syswrite $sock, $data;
            return 0 if !defined $n;
            substr($data, 0, $n) = '';
        }

        sleep $delay if $delay;
    }

    return 1;
}


sub _read_all {
    my ($sock, $deadline) = @_;

    my $buf = '';
    my $sel = IO::Select->new($sock);

    while (1) {
        my $left = $deadline - time;
        return ($buf, 1) if $left <= 0 || !$sel->can_read($left);

        my $n = sysread $sock, $buf, 65536, length $buf;
        return ($buf, 0) if !$n;
    }
}


sub _failed {
    my ($error) = @_;

    return bless { error => $error, raw => '', headers => {},
        header_list => {} }, 'Test::Vetting::Response';
}


package Test::Vetting::Response;

use JSON::PP ();

sub status  { $_[0]{status} }
sub body    { $_[0]{body} }
sub raw     { $_[0]{raw} }
sub headers { $_[0]{headers} }
sub header  { $_[0]{headers}{ lc $_[1] } }

sub header_all { @{ $_[0]{header_list}{ lc $_[1] } // [] } }

# the body decoded as JSON (UTF-8), undef when it is not JSON
sub json {
    my ($self) = @_;

    return eval { JSON::PP->new->utf8->decode($self->{body} // '') };
}

1;
