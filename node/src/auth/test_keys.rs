//! Key pairs for the unit tests of RS256 and EdDSA tokens, generated once with openssl for
//! these tests only (`genpkey -algorithm RSA|ED25519`); they protect nothing.

pub const RSA_PRIVATE: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEoAIBAAKCAQEAownZL8rTsMVssExc80F1wpOe/IJlVElyMPLSnkMEbA/1wQX1\n\
GZGElI46BVYrOWArWFEHTegJ1DS+2sRWw6nVErlSNtxDYB6YwEuFqP9cf/0lR/fW\n\
WyCcVGczTkP10n2pOgVqj0CsZqCkdhKCmaF/UiKSl3VkqWJei+fYnNLtz/OWg6mP\n\
UCrJJ+pj0fz2N/cjrrgA6UO2ttyW9ILlXwconwyoMuAX/CMOQQkZdFOAJ7wYsb8d\n\
csLHWKqP4530xd6qyqrPf/PhlUfGuoLhjvbMTB56qdXzmsEDca0a+bEJh6HpuquF\n\
NgxORTJy9j1vCYQ8Dg+RDJUXNzejHOeoMP0gAwIDAQABAoH/DmGv2d6zE0k2JSkV\n\
TjClUsg6Bjd6Y2kq2BwC6mUs8OZ8wowSGLHqsJe2avKq+53I8hR1WgGQxMLZJrtC\n\
oomxPVdjy6OjqwwTtD/sATVpzgKUUnbAsYQ6DuFKnMOCvQ3rqmUdXxX6IdB0KOJ2\n\
fK8Zj1kTCMsuFU9ut4od07zUmVsw1Keg/P8q7kJM+ZKjJ1v0pKDeNpJRZvGrKtxs\n\
3bWXeMW0u1gnvkUsYhPa0CY+sfhXva0ItAgG+M2Qxt2YPos/5en6cCJUvCtZc7EL\n\
jpbXHPwv5ETpQ+z+u/8BMZTwx89SaDoKFymjvYPbSsg7GCQE/KvC+VxxfGBtAlJk\n\
7aUNAoGBANa9XZWoblFc+L02oGO6DkJTKF9U9vGv4x1xPwTb93Z5J5CjhF9lI8jN\n\
ZSu9ZsO6Lwl2dzyxfS2dQndbRWbTz3km3NoxLQQizIxTVBddAhbofiOqAYcUmT/E\n\
xjoxg/iedIvLLV6ZPjRkHAuMfOSOJV1BIo1lRbWKdjlACv8Y3l3XAoGBAMJdZeWx\n\
CcsUnnOshYGuLC6ff8eYCXkydGoJBMQ93ZjXNbd5OCS3nQIbijXhM1pXhac37hTK\n\
PVk5EqX5CZwEqR5iq2chB3S+++m7RrAQmnvk+xYI0DwVayCfBTftN27g2EIZd8Bc\n\
Tyt1/g0a8ik5+JHklEzyR6fzoQQc4ZB8kpG1AoGAMzNPfwF73DZ4sFS4BU81WycM\n\
tz5A6vtvAXQg/H2eEUdt4ZS7WSt6TsR6XOV5/S0FThJK99Ox7xBR6rd+YrgZ/d8A\n\
RZ34B8ZsUwEDSdbJSsEAYmyElLqal5PJV9K6jqrpSvOUy7tqE3/TGAXVOYGS8xs2\n\
q9P7vP9YlOnqNUyuqF0CgYBwn5wGz2IEWetCzcoCjcEuNt/c8N00bCcGtjkb2VlJ\n\
UhLfQI9mvzpsWTbp55dRFvvsHD2JsHKB+88xey+1RwIUCEqXlIz0eiIQmqLoLIbH\n\
mbRgXTUES8jqexqUAJGpXwIQsx8vyI1beqB+SYnel6fQKepA9/bLfCFl97JAfd6U\n\
LQKBgH67u+j+ce/+44bmAPjtXcY02FQymae6O0X3K3PYOxK6ddOH0mTRdhD1yCW/\n\
+uVnKjGB0rxbBYDQbqRjYK9I8gvunoAjaNN9w5oUe6hDIPwpZKw+01RGdkqr4Tr0\n\
95NzeQuRihhm32ucGvQ7/61e8Qn0Kkc++DOvvNnUGhMQ4qYy\n\
-----END RSA PRIVATE KEY-----\n\
";

pub const RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAownZL8rTsMVssExc80F1\n\
wpOe/IJlVElyMPLSnkMEbA/1wQX1GZGElI46BVYrOWArWFEHTegJ1DS+2sRWw6nV\n\
ErlSNtxDYB6YwEuFqP9cf/0lR/fWWyCcVGczTkP10n2pOgVqj0CsZqCkdhKCmaF/\n\
UiKSl3VkqWJei+fYnNLtz/OWg6mPUCrJJ+pj0fz2N/cjrrgA6UO2ttyW9ILlXwco\n\
nwyoMuAX/CMOQQkZdFOAJ7wYsb8dcsLHWKqP4530xd6qyqrPf/PhlUfGuoLhjvbM\n\
TB56qdXzmsEDca0a+bEJh6HpuquFNgxORTJy9j1vCYQ8Dg+RDJUXNzejHOeoMP0g\n\
AwIDAQAB\n\
-----END PUBLIC KEY-----\n\
";

pub const ED25519_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIJsxwBT6h0oH9hUnbqOhnAKg6MI87nJNgWNDec17LDZH\n\
-----END PRIVATE KEY-----\n\
";

pub const ED25519_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MCowBQYDK2VwAyEA4YTPm4BWE9/9sVZk6oe/tVICUVYF+FLUAbufVLYK7Io=\n\
-----END PUBLIC KEY-----\n\
";
