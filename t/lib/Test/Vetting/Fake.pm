package Test::Vetting::Fake;

# Fake back ends and request builders for the prove tests of the module:
# an OAuth 2.0 / SMART authorization server, a FHIR server that answers
# every read, OAuth client credentials (HTTP Basic, form, unsigned JWS
# client assertions), and an access log format with the module's
# variables, parsed back into hashes.
#
#   my $as = authorization_server(patient => 'm-12345', cases => {
#       'c-bad' => { status => 400, body => '{"error":"invalid_grant"}' },
#       'c-slow' => { body => token_json(access => 'a1'), chunk => 1,
#                     delay => 0.001 },
#   });
#   $t->run_upstream('as', $as);
#   $t->run_upstream('fhir', fhir_server());
#
#   my $r = token_request($port, code => 'c-1', client_id => 'app-1');
#   my %e = access_entry($t, 'id-of-request');
#
# The authorization server answers:
#   GET  .../authorize   302 to https://app.example.com/cb?code=...&state=...
#                        (code: the "code" option, else "code-<client_id>")
#   POST .../token       the case named by the form's "code" (or
#                        "refresh_token"), else a SMART response whose
#                        access token is "AT-<code>" and refresh token
#                        "RT-<code>", for member $o{patient}
#   anything else        404
# A case is { status, headers, body, te, chunk, delay }: with te, the
# body is sent with "Transfer-Encoding: chunked" in chunks of te bytes;
# with chunk, the response is written in pieces of that many bytes with
# delay seconds after each (the body as one piece when chunk is 0).
#
# Handlers run in the upstream's processes: no Test::More in them.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use Exporter qw(import);
use JSON::PP ();
use MIME::Base64 qw(encode_base64);

use Test::Vetting::HTTP qw(http_req);
use Test::Vetting::Upstream qw(http_response pieces);

our @EXPORT = qw(authorization_server fhir_server token_json form_encode
    form_decode pct basic_auth jws b64url token_id token_request
    vetting_log_format access_entries access_entry outcome_of);


# a SMART token response, byte for byte as written here: fixed member
# order, no spaces, so tests can compare bodies exactly
sub token_json {
    my (%o) = @_;

    my @members;

    for my $m (
        ['access_token', $o{access} // 'AT-default', 1],
        ['token_type', $o{token_type} // 'Bearer', 1],
        ['expires_in', $o{expires_in} // '3600', 0],
        ['scope', $o{scope} // 'launch/patient openid fhirUser '
            . 'offline_access patient/*.read', 1],
        ['patient', exists $o{patient} ? $o{patient} : 'm-12345', 1],
        ['refresh_token', $o{refresh}, 1],
        ['id_token', $o{id_token} // jws({ alg => 'RS384', kid => 'k1' },
            { iss => 'https://as.example', sub => 'member',
              fhirUser => 'https://api.example/fhir/r4/Patient/m-12345' }),
            1],
    ) {
        my ($name, $value, $string) = @$m;
        next if !defined $value && $name eq 'refresh_token';
        next if exists $o{omit} && grep { $_ eq $name } @{ $o{omit} };

        # a raw value: "raw:<json text>" is written as it is
        my $json = !defined $value ? 'null'
            : $value =~ /^raw:(.*)$/s ? $1
            : $string ? JSON::PP->new->encode([$value]) =~ s/^\[|\]$//gr
            : $value;

        push @members, "\"$name\":$json";
    }

    return '{' . join(',', @members) . '}';
}


sub authorization_server {
    my (%o) = @_;

    my $cases = $o{cases} // {};

    return sub {
        my ($r) = @_;

        if ($r->{path} =~ m{/authorize$}) {
            my %q = form_decode($r->{query} // '');
            my $code = $o{code} // 'code-' . ($q{client_id} // 'none');
            my $state = $q{state} // 's';

            return {
                status => 302,
                headers => {
                    Location => 'https://app.example.com/cb?code='
                        . pct($code) . '&state=' . pct($state),
                },
            };
        }

        if ($r->{path} !~ m{/token$} || $r->{method} ne 'POST') {
            return { status => 404, body => "not here\n" };
        }

        my %f = eval { form_decode($r->{body}) };
        my $key = $f{code} // $f{refresh_token} // '';
        my $case = $cases->{$key};

        if (!$case) {
            $case = { body => token_json(access => "AT-$key",
                refresh => "RT-$key", patient => $o{patient} // 'm-12345') };
        }

        my $raw = http_response(
            status => $case->{status} // 200,
            headers => [
                'Content-Type' => 'application/json;charset=UTF-8',
                'Cache-Control' => 'no-store',
                'Pragma' => 'no-cache',
                @{ $case->{headers} // [] },
            ],
            body => $case->{te} ? [unpack "(a$case->{te})*",
                $case->{body}] : $case->{body} // '');

        return $raw if !defined $case->{chunk};

        my $head = substr($raw, 0, index($raw, "\r\n\r\n") + 4);
        my $body = substr($raw, length $head);

        return [$head, @{ pieces($body, $case->{chunk} || length $body,
            $case->{delay} // 0) }];
    };
}


# a FHIR server: 200 with a small Bundle naming the path for anything,
# the given status for a path ending in /status/NNN, and 404 for other
# paths with a "/missing" in them
sub fhir_server {
    return sub {
        my ($r) = @_;

        return { status => $1, body => "status $1\n" }
            if $r->{path} =~ m{/status/(\d{3})$};

        return { status => 404, body => '{"resourceType":"OperationOutcome"}' }
            if $r->{path} =~ m{/missing};

        return {
            headers => { 'Content-Type' => 'application/fhir+json' },
            body => '{"resourceType":"Bundle","type":"searchset",'
                . '"total":0,"x-path":' . JSON::PP->new->encode([$r->{path}])
                =~ s/^\[|\]$//gr . '}',
        };
    };
}


# application/x-www-form-urlencoded, as RFC 6749 appendix B encodes
sub pct {
    my ($s) = @_;

    $s =~ s/([^A-Za-z0-9*\-._ ])/sprintf('%%%02X', ord $1)/ge;
    $s =~ tr/ /+/;

    return $s;
}


# pairs, in the order given; a value may be an array ref (repeated)
sub form_encode {
    my (@pairs) = @_;

    my @out;

    while (my ($k, $v) = splice @pairs, 0, 2) {
        push @out, map { pct($k) . '=' . pct($_) } ref $v ? @$v : $v;
    }

    return join '&', @out;
}


sub form_decode {
    my ($s) = @_;

    my %f;

    for my $pair (split /&/, $s // '') {
        my ($k, $v) = split /=/, $pair, 2;
        for ($k, $v) {
            $_ //= '';
            tr/+/ /;
            s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
        }
        $f{$k} = $v;
    }

    return %f;
}


# RFC 6749 2.3.1: id and secret form-encoded, then base64
sub basic_auth {
    my ($id, $secret) = @_;

    return 'Basic ' . encode_base64(pct($id) . ':' . pct($secret), '');
}


sub b64url {
    my ($s) = @_;

    return encode_base64($s, '') =~ tr{+/}{-_}r =~ s/=+$//r;
}


# a compact JWS with the given header and claims and a made-up
# signature: well formed, never valid
sub jws {
    my ($header, $claims) = @_;

    my $json = JSON::PP->new->canonical;

    return join '.', b64url($json->encode($header)),
        b64url($json->encode($claims)), b64url("\x01not a signature\x02");
}


# $vetting_token_id of a token: 12 hex digits of its SHA-256
sub token_id { substr(sha256_hex($_[0]), 0, 12) }


# POST to the gateway's token endpoint; options: code, client_id,
# basic => [id, secret], assertion => jwt, secret (client_secret_post),
# grant (authorization_code), refresh, uri (/token), id (X-Test-Id)
sub token_request {
    my ($port, %o) = @_;

    my $grant = $o{grant} // (defined $o{refresh} ? 'refresh_token'
        : 'authorization_code');

    my @form = (grant_type => $grant);

    if ($grant eq 'refresh_token') {
        push @form, refresh_token => $o{refresh};
    } else {
        push @form, code => $o{code} // 'c-1',
            redirect_uri => 'https://app.example.com/cb',
            code_verifier => 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
    }

    push @form, client_id => $o{client_id} if defined $o{client_id};
    push @form, client_secret => $o{secret} if defined $o{secret};

    if (defined $o{assertion}) {
        push @form, client_assertion_type =>
            'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
            client_assertion => $o{assertion};
    }

    my @h = ('Content-Type' => 'application/x-www-form-urlencoded');
    push @h, Authorization => basic_auth(@{ $o{basic} }) if $o{basic};
    push @h, 'X-Test-Id' => $o{id} if defined $o{id};

    return http_req($port, 'POST', $o{uri} // '/token', headers => \@h,
        body => $o{body} // form_encode(@form));
}


# an access log format with every variable of the module, one
# "name=value" field each, the list of dry-run rules last; a request
# names itself with X-Test-Id
sub vetting_log_format {
    return q{log_format vetting 't=$http_x_test_id status=$status }
        . q{method=$request_method app=$vetting_app member=$vetting_member }
        . q{identity=$vetting_identity decision=$vetting_decision }
        . q{rule=$vetting_rule endpoint=$vetting_endpoint }
        . q{tenant=$vetting_tenant interaction=$vetting_interaction }
        . q{token=$vetting_token_id uri=$uri dry=$vetting_dry_run';};
}


# the lines of the vetting access log as hashes ("-" becomes "")
sub access_entries {
    my ($t, $file) = @_;

    my $text = $t->read_file($file // 'vetting.log') // '';
    my @entries;

    for my $line (split /\n/, $text) {

        # the last field, a list of rules, has spaces
        my ($fields, $dry) = $line =~ /^(.*?)(?: dry=(.*))?$/;

        my %e = map { my ($k, $v) = split /=/, $_, 2;
            ($k => ($v // '') eq '-' ? '' : $v) } split / /, $fields;
        $e{dry} = ($dry // '-') eq '-' ? '' : $dry;
        $e{line} = $line;
        push @entries, \%e;
    }

    return @entries;
}


# the entry of the request with X-Test-Id $id, waiting a little for it
sub access_entry {
    my ($t, $id, $file) = @_;

    $file //= 'vetting.log';

    $t->wait_for_log($file, qr/^t=\Q$id\E /, 5);

    my @found = grep { $_->{t} eq $id } access_entries($t, $file);

    return @found == 1 ? $found[0] : { line => scalar(@found) . ' lines' };
}


# the single issue of an OperationOutcome body, or undef
sub outcome_of {
    my ($r) = @_;

    my $j = $r->json or return undef;

    return undef if ($j->{resourceType} // '') ne 'OperationOutcome';

    return $j->{issue}[0];
}

1;
