package Test::Vetting::Upstream;

# Forking fake servers, run in a process of their own by Test::Vetting
# (run_tcp, run_upstream). Each connection is served by a child process.
#
# HTTP handlers get a request hash:
#   method, uri, path, query (undef without "?"), version, seq (1 for
#   the first connection the server accepted), headers (lower-case
#   keys, repeats joined with ", "), header_list ([name, value] pairs
#   as sent), body (de-chunked)
# and return one of:
#   "raw bytes"                        written as they are
#   { status, reason, headers, body }  see http_response
#   [ [bytes, delay], "bytes", ... ]   pieces, with a pause after each
#   sub { my ($sock, $req) = @_; ... } full control (stall, cut)
#   undef                              close without an answer
# Don't use Test::More in handlers: they run in other processes.

use strict;
use warnings;

use Exporter qw(import);
use Fcntl qw(:flock);
use IO::Select;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(http_response pieces);

my %reasons = (
    100 => 'Continue', 200 => 'OK', 201 => 'Created',
    204 => 'No Content', 301 => 'Moved Permanently', 302 => 'Found',
    304 => 'Not Modified', 400 => 'Bad Request', 401 => 'Unauthorized',
    403 => 'Forbidden', 404 => 'Not Found', 405 => 'Method Not Allowed',
    429 => 'Too Many Requests', 500 => 'Internal Server Error',
    502 => 'Bad Gateway', 503 => 'Service Unavailable',
    504 => 'Gateway Timeout',
);


sub mult { $ENV{TEST_VETTING_TIMEOUT_MULT} || 1 }


# the accept loop: never returns; $handler->($sock, $seq) in a child
sub serve {
    my ($listen, $handler) = @_;

    local $SIG{CHLD} = 'IGNORE';
    my $seq = 0;

    while (1) {
        my $c = $listen->accept;
        next if !$c;

        $seq++;
        my $pid = fork;

        if (!defined $pid) {
            warn "fork: $!\n";
            close $c;
            next;
        }

        if ($pid == 0) {
            $SIG{CHLD} = 'DEFAULT';
            $SIG{PIPE} = 'IGNORE';
            close $listen;
            binmode $c;

            # a safety net for handlers that stall
            alarm int(60 * mult());

            eval { $handler->($c, $seq); 1 }
                or print STDERR "handler failed: $@";

            close $c;
            POSIX::_exit(0);
        }

        close $c;
    }
}


# wraps an HTTP handler into a connection handler that logs requests
sub http_server {
    my ($handler, $log) = @_;

    return sub {
        my ($sock, $seq) = @_;

        my $req = read_request($sock, 10 * mult()) or return;
        $req->{seq} = $seq;
        log_request($log, $req);

        my $res = ref $handler eq 'CODE'
            ? eval { $handler->($req) } // _died($@)
            : $handler;

        send_response($sock, $res, $req);
        shutdown $sock, 1 if defined fileno $sock;
    };
}


sub _died {
    my ($error) = @_;

    return undef if !$error;

    print STDERR "handler died: $error";
    return { status => 500, body => "handler died: $error" };
}


sub read_request {
    my ($sock, $timeout) = @_;

    my $buf = '';
    my $deadline = time + $timeout;

    while ($buf !~ /\r?\n\r?\n/) {
        _fill($sock, \$buf, $deadline) or return undef;
        $buf =~ s/\A(?:\r?\n)+//;
    }

    # match variables of a loop condition end with the loop
    $buf =~ /\r?\n\r?\n/;
    my $head = substr($buf, 0, $-[0]);
    $buf = substr($buf, $+[0]);

    my ($line, @lines) = split /\r?\n/, $head;
    my ($method, $uri, $version) =
        $line =~ m{^(\S+)\s+(\S+)(?:\s+HTTP/(\d\.\d))?\s*$}
        or return { method => '', uri => '', path => '', bad => $line,
            headers => {}, header_list => [], body => '' };

    my (%headers, @list);

    for (@lines) {
        next if !/^([^:]+):[ \t]*(.*?)[ \t]*$/;
        push @list, [$1, $2];
        my $name = lc $1;
        $headers{$name} = defined $headers{$name}
            ? "$headers{$name}, $2" : $2;
    }

    my ($path, $query) = split /\?/, $uri, 2;
    my $body = '';

    if (($headers{'transfer-encoding'} // '') =~ /chunked/i) {
        $body = _read_chunked($sock, \$buf, $deadline);

    } elsif (defined $headers{'content-length'}) {
        my $len = $headers{'content-length'};
        while (length $buf < $len) {
            _fill($sock, \$buf, $deadline) or last;
        }
        $body = substr($buf, 0, $len);
    }

    return {
        method      => $method,
        uri         => $uri,
        path        => $path,
        query       => $query,
        version     => $version // '0.9',
        headers     => \%headers,
        header_list => \@list,
        body        => $body,
    };
}


sub _read_chunked {
    my ($sock, $buf, $deadline) = @_;

    my $body = '';

    while (1) {
        while ($$buf !~ /\A[0-9a-fA-F]+[^\r\n]*\r?\n/) {
            _fill($sock, $buf, $deadline) or return $body;
        }

        $$buf =~ /\A([0-9a-fA-F]+)[^\r\n]*\r?\n/;
        my $size = hex $1;
        substr($$buf, 0, $+[0]) = '';

        if ($size == 0) {
            # trailers, up to an empty line
            while ($$buf !~ /(?:\A|\n)\r?\n/) {
                _fill($sock, $buf, $deadline) or last;
            }
            return $body;
        }

        while (length $$buf < $size + 2) {
            _fill($sock, $buf, $deadline) or return $body . $$buf;
        }

        $body .= substr($$buf, 0, $size, '');
        $$buf =~ s/\A\r?\n//;
    }
}


sub _fill {
    my ($sock, $buf, $deadline) = @_;

    my $left = $deadline - time;
    return 0 if $left <= 0 || !IO::Select->new($sock)->can_read($left);

    my $n = sysread $sock, $$buf, 65536, length $$buf;

    return $n;
}


sub log_request {
    my ($log, $req) = @_;

    return if !$log;

    # ascii: bytes above 127 become \u00XX and decode back to the same
    # bytes, so binary bodies and headers survive
    my $line = JSON::PP->new->ascii->canonical->encode({
        %$req, time => time,
    }) . "\n";

    open my $fh, '>>', $log or return;
    flock $fh, LOCK_EX;
    syswrite $fh, $line;
    close $fh;
}


sub send_response {
    my ($sock, $res, $req) = @_;

    return if !defined $res;

    my $type = ref $res;

    return _write($sock, $res) if !$type;
    return _write($sock, http_response(%$res)) if $type eq 'HASH';
    return $res->($sock, $req) if $type eq 'CODE';

    if ($type eq 'ARRAY') {
        for my $piece (@$res) {
            my ($data, $delay) = ref $piece ? @$piece : ($piece, 0);
            _write($sock, $data) or return;
            sleep $delay if $delay;
        }
        return;
    }

    die "bad handler answer: $type\n";
}


sub _write {
    my ($sock, $data) = @_;

    while (length $data) {
        my $n = syswrite $sock, $data;
        return 0 if !defined $n;
        substr($data, 0, $n) = '';
    }

    return 1;
}


# a full response: status (200), reason, headers (hash ref or array ref
# of pairs; a value may be an array ref), body; a body given as an array
# ref of strings is sent chunked. Content-Length and "Connection: close"
# are added unless given (headers => { 'Content-Length' => undef }
# leaves the length out).
sub http_response {
    my (%o) = @_;

    my $status = $o{status} // 200;
    my $reason = $o{reason} // $reasons{$status} // 'Status';
    my @h = ref $o{headers} eq 'ARRAY' ? @{ $o{headers} }
          : %{ $o{headers} // {} };
    my $body = $o{body} // '';

    my %have;
    my $text = "HTTP/1.1 $status $reason\r\n";

    while (my ($name, $value) = splice @h, 0, 2) {
        $have{ lc $name } = 1;
        next if !defined $value;
        $text .= "$name: $_\r\n" for ref $value ? @$value : $value;
    }

    if (ref $body) {
        $text .= "Transfer-Encoding: chunked\r\n"
            if !$have{'transfer-encoding'};
        $body = join('', map { sprintf("%x\r\n%s\r\n", length, $_) }
            grep { length } @$body) . "0\r\n\r\n";

    } elsif (!$have{'content-length'}) {
        $text .= 'Content-Length: ' . length($body) . "\r\n";
    }

    $text .= "Connection: close\r\n" if !$have{connection};

    return "$text\r\n$body";
}


# splits bytes into pieces of $size bytes, each followed by $delay
# seconds: pieces($raw, 1, 0.01) sends a response one byte at a time
sub pieces {
    my ($data, $size, $delay) = @_;

    $size ||= 1;
    return [] if !length $data;

    return [map { [substr($data, $_ * $size, $size), $delay // 0] }
        0 .. int((length($data) - 1) / $size)];
}

1;
