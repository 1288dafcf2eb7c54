/*
 * A java.util.UUID held in a ulid column as the ULID's text: the same 128
 * bits, written in Crockford's base32 (26 digits, the first at most 7).
 * Hibernate asks for a String when it binds the value and hands one back
 * when it reads it; everything else is UUIDJavaType's.
 */
package inboxoutbox.clients.hibernate;

import java.util.UUID;

import org.hibernate.type.descriptor.WrapperOptions;
import org.hibernate.type.descriptor.java.UUIDJavaType;

// docs: begin hibernate-ulid-uuid-type
public class UlidUuidJavaType extends UUIDJavaType {
    private static final long serialVersionUID = 1L;
    private static final String DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    @Override
    public <X> X unwrap(UUID value, Class<X> type, WrapperOptions options) {
        if (value != null && type == String.class) {
            long hi = value.getMostSignificantBits();
            long lo = value.getLeastSignificantBits();
            char[] text = new char[26];
            for (int i = 25; i >= 0; i--) {
                text[i] = DIGITS.charAt((int) (lo & 31));
                lo = (lo >>> 5) | (hi << 59);
                hi >>>= 5;
            }
            return type.cast(new String(text));
        }
        return super.unwrap(value, type, options);
    }

    @Override
    public <X> UUID wrap(X value, WrapperOptions options) {
        if (value instanceof String text) {                 // the server's upper-case text
            long hi = 0;
            long lo = 0;
            for (int i = 0; i < text.length(); i++) {
                hi = (hi << 5) | (lo >>> 59);
                lo = (lo << 5) | DIGITS.indexOf(text.charAt(i));
            }
            return new UUID(hi, lo);
        }
        return super.wrap(value, options);
    }
}
// docs: end hibernate-ulid-uuid-type
