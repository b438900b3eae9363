import { Type } from 'typebox';

/** `{"errors":[{"errorCode","message"}]}`, the error shape of every endpoint (XML: root `<response>`). */
export const ErrorResponse = Type.Object({
  errors: Type.Array(
    Type.Object({ errorCode: Type.String(), message: Type.String() }, { additionalProperties: true }),
  ),
});
