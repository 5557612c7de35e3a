"""Signs a model with model_signing's own key signer, for a predicate type of the caller's choosing:
the model_signing CLI only writes https://model_signing/signature/v1.0, and a verifier must refuse
a statement of another type signed by the same key.

  oms_sign_predicate.py <model> <private key PEM> <signature out> <predicate type>
"""
import pathlib
import sys

from model_signing import hashing
from model_signing._signing import sign_ec_key, signing


def main(model, key, out, predicate_type):
    payload = signing.Payload(hashing.Config().hash(pathlib.Path(model)))
    payload.statement.pb.predicate_type = predicate_type
    sign_ec_key.Signer(pathlib.Path(key)).sign(payload).write(pathlib.Path(out))


if __name__ == '__main__':
    main(*sys.argv[1:5])
