// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ERC165Checker} from "@openzeppelin/contracts/utils/introspection/ERC165Checker.sol";
import {IRoundVerifier} from "./IRoundVerifier.sol";
import {AggregatorRegistry} from "./AggregatorRegistry.sol";

/// @title ContributionMarket
/// @notice Escrow for collaborative training tasks (Proof-of-Contribution design).
///
/// An owner escrows a reward (ETH or an ERC-20) split into equal per-round pools and fixes, at
/// creation, the whole schedule: round r opens at `startAt + r * period` and runs a commit window,
/// a reveal window, the panel's result window and, if the task asks for a backup, the backup's
/// result window. The owner names no aggregator: each round, `panel` members (and a backup) are drawn
/// from the `registry` of bonded aggregators with the round's seed, never the owner; each posts the
/// result it computed, and the round settles once `quorum` of them posted the same one (the members
/// that did share `feeBps` of the round's pool; those that posted another, or stayed silent when it
/// was their turn, lose part of their bond to the round's paid trainers). Trainers join with the
/// task's stake. In the commit window a trainer posts only `keccak256(abi.encode(cid, commitment, salt, trainer, taskId, round))`;
/// in the reveal window it reveals the update's CID, its (sketch) commitment and the salt, so
/// nobody can copy an update it has not seen and a copy made after the reveal is too late.
/// The reveal window closes at its deadline or as soon as every committer revealed; the hash
/// of the block that closes it seeds every random choice of the round (`roundSeed`), so no
/// party in the round picks it. The panel (then the backup) posts basis points for the
/// revealed updates; the contract credits the round's pool, plus the stakes lost this round
/// (committers that did not reveal, updates the result marks unavailable or invalid), to the
/// paid trainers by cumulative rounding, so not a wei of it goes to the owner. When no result
/// comes, the revealed trainers may prove their updates available by posting them (their sha2-256
/// must be the revealed CID) in an availability window that ends the round; anyone may then settle
/// the round by an equal split among the updates proved available (nobody's update is paid
/// unchecked: with none proved, the pool carries over to the next round). An empty
/// round (nothing revealed) refunds that round's pool only; the owner reclaims the rest only
/// after `emptyRoundsToReclaim` empty rounds in a row (never, if 0). A pool nobody earned (every
/// update invalid, or none proved available) carries over to the next round and, after the last,
/// back to the owner; the last round's unpaid lost stakes are split among the trainers still holding a
/// stake that a round paid since they took their seat, and go to the owner only when there is none.
/// Stakes come back when the task ends or when the trainer leaves between rounds. A proof task's
/// verifier must have a code hash on the market's allowlist as a verifier, and every contract it calls
/// (`components`) as a component; only the `verifierAdmin` fixed at deployment extends the list.
/// Every balance is a pull payment; no path leaves funds locked.
/// @dev CIDs are stored as the 32-byte sha2-256 digest of a CIDv1 raw CID. Update CIDs and
/// commitments live in events; the contract keeps a running keccak digest over (join index,
/// cid, commitment) of every reveal (seeded with the task id, chained across rounds, emitted at
/// each settlement and given to the verifier), which readers use to check the events they read.
/// `bps` follows the revealed trainers in join order. The guard is OpenZeppelin's storage
/// `ReentrancyGuard` (`withdrawTo`, which transfers last, does without it): the contract is built
/// for `evmVersion` shanghai so one artifact runs on every node (Anvil, the in-process EVM, Ganache 7).
contract ContributionMarket is ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice Basis points in a whole round pool.
    uint256 public constant BPS = 10_000;
    /// @notice Most trainers a task can admit.
    uint256 public constant MAX_TRAINERS = 256;
    /// @notice Most rounds a task can have.
    uint256 public constant MAX_ROUNDS = 10_000;
    /// @notice Shortest windows a task may set (seconds): trainers and aggregators get time to act.
    uint256 public constant MIN_SUBMIT_WINDOW = 60;
    uint256 public constant MIN_REVEAL_WINDOW = 30;
    uint256 public constant MIN_RESULT_WINDOW = 60;
    /// @dev ... and with a quorum above one, whose window has four phases (compute, commit by 6/8, a gap, vote from
    /// 7/8): an eighth of it is a minute, several blocks on any chain (shorter, an honest member could find no
    /// block to vote in before the window ends, and be fined for a silent member's sake)
    uint256 private constant MIN_QUORUM_RESULT_WINDOW = 480;
    /// @notice Longest window (seconds): 30 days.
    uint256 public constant MAX_WINDOW = 30 days;

    /// @notice How a round was settled.
    uint8 public constant SETTLED_BY_RESULT = 1;
    uint8 public constant SETTLED_BY_FALLBACK = 2;
    uint8 public constant SETTLED_BY_REFUND = 3;

    struct TaskParams {
        bytes32 specCid;
        bytes32 initialModelCid;
        bytes32 validationCommitment;
        address verifier; // address(0): no proof required
        uint16 feeBps; // the aggregators' fee: basis points of each round's pool, paid for an accepted result
        uint8 panel; // aggregators drawn each round (1..MAX_PANEL)
        uint8 quorum; // identical results that decide a round (more than half the panel)
        bool backup; // also draw a backup, who may post (and vote) in a second result window
        uint32 rounds;
        uint32 submitWindow;
        uint32 revealWindow;
        uint32 resultWindow;
        uint32 maxTrainers;
        uint32 emptyRoundsToReclaim; // 0: the owner never reclaims early
        uint128 stake; // per trainer, in the reward's token; 0 allowed (development)
    }

    /// @notice Everything stored about a task, as `getTask` returns it.
    struct TaskView {
        address owner;
        uint32 createdBlock;
        uint32 drawBlock; // the block the current round's panel is drawn as of: its first seal (a re-seal keeps it)
        uint32 startAt; // round r opens at startAt + r * period
        uint32 currentRound; // == rounds once finished
        uint16 feeBps;
        uint8 panel;
        uint8 quorum;
        bool backup;
        uint16 rounds;
        uint24 submitWindow;
        uint24 revealWindow;
        uint32 period; // submit + reveal + result (+ result again with a backup) + availability (= reveal)
        uint24 resultWindow;
        uint16 trainerCount;
        uint16 emptyRoundsToReclaim;
        uint16 emptyStreak; // consecutive empty rounds just settled
        address token; // address(0): ETH
        address verifier;
        uint16 committedCount;
        uint16 revealedCount;
        uint16 countRound;
        uint16 maxTrainers;
        uint32 sealBlock; // the block that closed round `countRound`'s reveal window (0: not yet)
        uint128 reward;
        uint128 refunded; // to the owner, all rounds
        uint128 escrow; // pools not yet settled
        uint128 credited; // to trainers from pools and lost stakes, all rounds
        uint128 refundsWithdrawn;
        uint128 stake;
        uint128 stakesHeld; // stakes deposited and neither returned nor lost
        uint128 carry; // lost stakes of a round that paid nobody: added to the next round's payout
        uint128 carryPool; // pools nobody earned (all invalid, or none proved available): the next round's
        uint128 fees; // paid to aggregators, all rounds
        bytes32 submissionsDigest; // running digest over every reveal of the task
        bytes32 latestModelCid; // the model the current round trains from
        bytes32 specCid;
        bytes32 validationCommitment;
    }

    /// @dev Packed so that a commit, a reveal, a settlement and a withdrawal touch few slots. Round counters
    /// are tagged with `countRound` instead of being reset. Times fit 32 bits until 2106. A task exists
    /// iff `rounds` is not zero.
    struct Task {
        // slot 0: read by every call (a withdrawal reads no other slot of the task)
        address token; // address(0): ETH
        uint32 startAt; // round r opens at startAt + r * period
        uint32 currentRound; // == rounds once finished
        uint16 rounds;
        // slot 1 (feeBps still fits in slot 0): the schedule and the panel
        uint16 feeBps;
        uint8 panel;
        uint8 quorum;
        bool backup;
        uint24 submitWindow;
        uint24 revealWindow;
        uint32 period; // submit + reveal + result (+ result again with a backup) + availability (= reveal)
        // slot 2
        uint24 resultWindow;
        uint16 trainerCount;
        uint16 emptyRoundsToReclaim;
        uint16 emptyStreak; // consecutive empty rounds just settled
        uint16 freeCount; // seats given up (left, or stake lost) that the next joiners take
        // slot 3
        address owner;
        uint32 createdBlock;
        // slot 4: the current round's counters, tagged with `countRound` instead of being reset
        address verifier;
        uint16 committedCount;
        uint16 revealedCount;
        uint16 countRound;
        uint16 maxTrainers;
        uint32 sealBlock; // the block that closed round `countRound`'s reveal window (0: not yet)
        uint128 reward;
        uint128 refunded; // to the owner, all rounds
        uint128 escrow; // pools not yet settled
        uint128 credited; // to trainers from pools and lost stakes, all rounds
        uint128 refundsWithdrawn;
        uint128 stake;
        uint128 stakesHeld; // stakes deposited and neither returned nor lost
        uint128 carry; // lost stakes of a round that paid nobody: added to the next round's payout
        uint128 carryPool; // pools nobody earned (all invalid, or none proved available): the next round's
        uint128 fees; // paid to aggregators, all rounds
        bytes32 submissionsDigest; // running digest over every reveal of the task
        bytes32 latestModelCid; // the model the current round trains from
        bytes32 specCid;
        bytes32 validationCommitment;
    }

    /// @dev A trainer's place in a task: one slot, read and written by every commit, reveal and credit.
    struct Seat {
        uint16 index; // 1-based join order (0: not joined)
        uint32 committedTag; // last round committed to, plus one
        uint32 revealedTag; // last round revealed in, plus one
        bool staked; // holds the task's full stake
        uint128 earned; // credited and not withdrawn (plus stakes returned on leaving)
        uint32 availableTag; // last round whose update it proved available (`proveAvailable`), plus one
        bool paid; // credited by a round since it took this seat (takes a share of lost stakes left at the end)
    }

    /// @notice Who may add code hashes to the verifier allowlist (fixed at deployment; address(0): nobody).
    address public immutable verifierAdmin;
    /// @notice The bonded aggregators every round's panel is drawn from.
    AggregatorRegistry public immutable registry;
    /// @notice Largest panel a task may ask for, and largest fee (basis points of a round's pool).
    uint256 public constant MAX_PANEL = 7;
    uint256 public constant MAX_FEE_BPS = 5_000;
    uint256 private _taskCount;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => mapping(address trainer => Seat)) private _seats;
    mapping(uint256 taskId => mapping(address trainer => uint256)) private _stakes;
    mapping(uint256 taskId => mapping(address trainer => bytes32)) private _commitments;
    mapping(uint256 taskId => mapping(uint256 index => address trainer)) private _trainerAt;
    /// @dev seats given up, taken again by the next joiners (a stack of `freeCount` indices)
    mapping(uint256 taskId => mapping(uint256 position => uint256 index)) private _freeSeats;
    /// @dev round seeds kept while their seal block's hash is readable (`seal` after the seal)
    mapping(uint256 taskId => mapping(uint256 round => bytes32 seed)) private _seeds;
    /// @notice What a code hash is allowed as: 1 a task's verifier, 2 a contract a verifier calls (a Groth16
    /// verifier, one of its `components`); 0 not allowed. A hash is allowed as one kind only.
    mapping(bytes32 codeHash => uint8 kind) public verifierCodeKind;
    /// @dev a round's first seal block, kept only when the round is sealed again: its panel is still drawn as of it
    mapping(uint256 taskId => mapping(uint256 round => uint256 sealBlock)) private _drawBlocks;

    /// @notice The verifier allowlist took a code hash (`kind` 1: a verifier, 2: a verifier's component).
    event VerifierCodeAllowed(bytes32 indexed codeHash, uint8 kind);
    /// @notice A trainer proved its revealed update available (its bytes hash to the revealed CID).
    event UpdateAvailable(uint256 indexed taskId, uint256 indexed round, address indexed trainer, bytes32 cid);
    /// @notice A task was created and its reward escrowed.
    event TaskCreated(
        uint256 indexed taskId,
        address indexed owner,
        address token,
        uint256 reward,
        uint32 rounds,
        bytes32 specCid
    );
    /// @notice A trainer joined a task (or topped its stake up); `index` is its 1-based join order.
    event TrainerJoined(uint256 indexed taskId, address indexed trainer, uint256 index, uint256 stake);
    /// @notice A trainer committed to its update for a round (the CID stays hidden until the reveal).
    event UpdateCommitted(uint256 indexed taskId, uint256 indexed round, address indexed trainer, bytes32 commitment);
    /// @notice A trainer revealed its update: the CID and the (sketch) commitment its hash bound.
    /// `index` is the trainer's seat when it revealed (the order `bps` follows).
    event UpdateRevealed(
        uint256 indexed taskId,
        uint256 indexed round,
        address indexed trainer,
        uint256 index,
        bytes32 cid,
        bytes32 commitment
    );
    /// @notice The reveal window of a round closed at block `sealBlock`; its hash seeds the round (a round
    /// whose seal block's hash was never kept and became unreadable is sealed again).
    event RoundSealed(uint256 indexed taskId, uint256 indexed round, uint256 sealBlock);
    /// @notice A round's seed was kept in storage (it no longer depends on the seal block's hash being readable).
    event SeedKept(uint256 indexed taskId, uint256 indexed round, bytes32 seed);
    /// @notice A trainer lost its stake in a round (no reveal, or an update marked unavailable or invalid).
    event StakeLost(uint256 indexed taskId, uint256 indexed round, address indexed trainer, uint256 amount);
    /// @notice A trainer's stake was given back (the task ended, or it left between rounds).
    event StakeReturned(uint256 indexed taskId, address indexed trainer, uint256 amount);
    /// @notice An aggregator that voted for a round's decided result was credited its share of the fee.
    event FeeCredited(uint256 indexed taskId, uint256 indexed round, address indexed aggregator, uint256 amount);
    /// @notice A trainer was credited for a round.
    event TrainerCredited(uint256 indexed taskId, uint256 indexed round, address indexed trainer, uint256 amount);
    /// @notice A round was settled (`mode` 1 result, 2 fallback split, 3 refund); `submissionsDigest`
    /// is the running digest after its reveals, `seed` the round's seed (zero unless `mode` is 1);
    /// the CIDs are zero unless `mode` is 1. `credited` includes lost stakes paid out.
    event RoundSettled(
        uint256 indexed taskId,
        uint256 indexed round,
        uint8 mode,
        uint256 credited,
        uint256 refunded,
        bytes32 submissionsDigest,
        bytes32 modelCid,
        bytes32 receiptCid,
        bytes32 seed
    );
    /// @notice The owner reclaimed every pool after `emptyRoundsToReclaim` empty rounds in a row.
    event TaskReclaimed(uint256 indexed taskId, uint256 amount);
    /// @notice Every round of the task is settled.
    event TaskFinished(uint256 indexed taskId);
    /// @notice A trainer withdrew what it was owed by a task, paid to `recipient`.
    event Withdrawn(uint256 indexed taskId, address indexed account, address recipient, uint256 amount);
    /// @notice The owner withdrew the refunds of a task.
    event RefundWithdrawn(uint256 indexed taskId, address indexed owner, uint256 amount);

    // Each error's @notice is the one-line message the client shows for it (market/chain/client.py
    // reads it from the artifact's userdoc and fills the {placeholders} with the error's arguments).
    /// @notice unknown task {taskId}
    error MarketUnknownTask(uint256 taskId);
    /// @notice a panel of {panel} aggregators needs a quorum of more than half and at most all of them, not {quorum}
    error MarketBadPanel(uint256 panel, uint256 quorum);
    /// @notice two rounds of {period} s would outlast the registry's exit delay of {exitDelay} s: shorten the windows
    error MarketRoundTooLong(uint256 period, uint256 exitDelay);
    /// @notice the aggregators' fee is {feeBps} basis points of a round's pool; at most 5000 allowed
    error MarketBadFee(uint256 feeBps);
    /// @notice the task needs {needed} registered aggregators; the registry has {active}
    error MarketFewAggregators(uint256 needed, uint256 active);
    /// @notice rounds must be between 1 and 10000 (got {rounds})
    error MarketBadRounds(uint256 rounds);
    /// @notice windows must be at least 60 s to submit, 30 s to reveal, 60 s for the result (480 s with a quorum above one), and at most 30 days
    error MarketBadWindows();
    /// @notice max trainers must be between 1 and 256 (got {maxTrainers})
    error MarketBadMaxTrainers(uint256 maxTrainers);
    /// @notice the reward {reward} is over the most a task may escrow (2**127 - 1)
    error MarketRewardTooLarge(uint256 reward);
    /// @notice sent {sent} wei but {expected} wei are due
    error MarketWrongValue(uint256 expected, uint256 sent);
    /// @notice a reward of {reward} cannot fund {rounds} rounds (at least 1 wei per round)
    error MarketRewardTooSmall(uint256 reward, uint256 rounds);
    /// @notice the verifier {verifier} is not a contract implementing IRoundVerifier
    error MarketBadVerifier(address verifier);
    /// @notice the verifier {verifier} (or a contract it calls) has code hash {codeHash}, which is not on this market's allowlist
    error MarketVerifierNotAllowed(address verifier, bytes32 codeHash);
    /// @notice only the market's verifier admin may extend the allowlist ({caller} is not)
    error MarketNotAdmin(address caller);
    /// @notice code hash {codeHash} is already allowed as the other kind (a verifier, or a verifier's component)
    error MarketCodeKindConflict(bytes32 codeHash);
    /// @notice a stake of {stake} is over the most a task may ask (2**96 - 1)
    error MarketStakeTooLarge(uint256 stake);
    /// @notice the update's bytes do not hash to what {trainer} revealed
    error MarketNotTheUpdate(address trainer);
    /// @notice {trainer} revealed nothing this round
    error MarketNotRevealed(address trainer);
    /// @notice updates are proved available only after every result window, from unix time {opensAt} until the round is settled
    error MarketNotAvailabilityWindow(uint256 opensAt);
    /// @notice {trainer} has already proved its update available
    error MarketAlreadyAvailable(address trainer);
    /// @notice the token {token} is not a contract
    error MarketBadToken(address token);
    /// @notice task {taskId} has finished: every round is settled
    error MarketTaskFinished(uint256 taskId);
    /// @notice {account} already has another role in this task
    error MarketRoleConflict(address account);
    /// @notice {trainer} has already joined this task with its full stake
    error MarketAlreadyJoined(address trainer);
    /// @notice the task is full ({maxTrainers} trainers)
    error MarketTaskFull(uint256 maxTrainers);
    /// @notice {trainer} has not joined this task (run `market trainer join` first)
    error MarketNotJoined(address trainer);
    /// @notice the stake is {held}, the task needs {required}: join again to top it up
    error MarketStakeTooLow(uint256 required, uint256 held);
    /// @notice wrong round: the task is in round {expected}, not {given}
    error MarketWrongRound(uint256 expected, uint256 given);
    /// @notice too early: this round opens at unix time {opensAt}
    error MarketRoundNotOpen(uint256 opensAt);
    /// @notice too late: submissions for this round closed at unix time {deadline}
    error MarketSubmissionClosed(uint256 deadline);
    /// @notice {trainer} has already committed an update for this round
    error MarketAlreadySubmitted(address trainer);
    /// @notice a CID or commitment of all zeros is not allowed
    error MarketZeroCid();
    /// @notice reveals open once submissions close, at unix time {deadline}
    error MarketRevealNotOpen(uint256 deadline);
    /// @notice too late: reveals for this round closed at unix time {deadline}
    error MarketRevealClosed(uint256 deadline);
    /// @notice {trainer} committed nothing this round
    error MarketNotCommitted(address trainer);
    /// @notice {trainer} has already revealed its update for this round
    error MarketAlreadyRevealed(address trainer);
    /// @notice the revealed CID, commitment and salt do not hash to the committed value
    error MarketBadReveal();
    /// @notice the round's reveal window is still open until unix time {deadline}
    error MarketRevealOpen(uint256 deadline);
    /// @notice the round is sealed at block {sealBlock}; its seed is readable from the next block
    error MarketNotSealed(uint256 sealBlock);
    /// @notice the round's seed is already fixed
    error MarketAlreadySealed();
    /// @notice the hash of seal block {sealBlock} is no longer readable: call `seal` to seal the round again
    error MarketSeedExpired(uint256 sealBlock);
    /// @notice the round's seed is {expected}, not the one given
    error MarketWrongSeed(bytes32 expected);
    /// @notice nothing was revealed this round: settle it instead
    error MarketNothingRevealed();
    /// @notice {caller} is not on this round's panel (its backup may post only in the backup window)
    error MarketNotAggregator(address caller);
    /// @notice only the task's owner may do this ({caller} is not)
    error MarketNotOwner(address caller);
    /// @notice the round is not over until unix time {deadline}: its result windows, then its availability window, come first
    error MarketResultWindowOpen(uint256 deadline);
    /// @notice too late: the result window closed at unix time {deadline}
    error MarketResultWindowClosed(uint256 deadline);
    /// @notice too late to commit to a result: the panel's commitments closed at unix time {closedAt}
    error MarketVoteCommitsClosed(uint256 closedAt);
    /// @notice expected {expected} basis-point entries (one per revealed update), got {given}
    error MarketWrongLength(uint256 expected, uint256 given);
    /// @notice basis points sum to {sum}, not 10000 (0 only when every update is marked lost, or with a proof)
    error MarketBadBasisPoints(uint256 sum);
    /// @notice update {position} is marked invalid but paid
    error MarketPaidAndLost(uint256 position);
    /// @notice the result's proof does not verify
    error MarketInvalidProof();
    /// @notice the owner may reclaim only after {needed} empty rounds in a row ({streak} so far)
    error MarketNotAbandoned(uint256 needed, uint256 streak);
    /// @notice round {round} has commitments: it must be settled first
    error MarketRoundHasSubmissions(uint256 round);
    /// @notice {trainer} committed to the current round: leave after it settles
    error MarketCannotLeave(address trainer);
    /// @notice nothing to withdraw
    error MarketNothingToWithdraw();
    /// @notice the recipient cannot be the zero address
    error MarketZeroRecipient();

    /// @notice Most a task may escrow and ask as a stake: with at most 256 seats and 10,000 rounds, every sum
    /// the contract keeps (pools, carried stakes, credits) stays below 2**128.
    uint256 public constant MAX_REWARD = 2 ** 127 - 1;
    uint256 public constant MAX_STAKE = 2 ** 96 - 1;

    /// @param admin who may extend the verifier allowlist (address(0): the list is fixed here)
    /// @param verifiers code hashes allowed from the start as a task's verifier
    /// @param components code hashes allowed from the start as a contract a verifier calls
    /// @param registry_ the aggregator registry (deployed for this market)
    constructor(address admin, bytes32[] memory verifiers, bytes32[] memory components, AggregatorRegistry registry_) {
        verifierAdmin = admin;
        registry = registry_;
        _allowCodes(verifiers, 1);
        _allowCodes(components, 2);
    }

    // ------------------------------------------------------------------ admin

    /// @notice Allow, for new proof tasks, verifiers with the code hashes `verifiers` and the contracts they
    /// call (Groth16 verifiers) with the code hashes `components`. The list only grows; it touches no task
    /// already created and no money.
    function allowVerifierCode(bytes32[] calldata verifiers, bytes32[] calldata components) external {
        if (msg.sender != verifierAdmin) revert MarketNotAdmin(msg.sender);
        _allowCodes(verifiers, 1);
        _allowCodes(components, 2);
    }

    function _allowCodes(bytes32[] memory codeHashes, uint8 kind) private {
        for (uint256 i = 0; i < codeHashes.length; ++i) {
            bytes32 h = codeHashes[i];
            uint8 was = verifierCodeKind[h];
            if (was == kind) continue;
            if (was != 0) revert MarketCodeKindConflict(h);
            verifierCodeKind[h] = kind;
            emit VerifierCodeAllowed(h, kind);
        }
    }

    // ------------------------------------------------------------------ owner

    /// @notice Create a task and escrow its reward: ETH (`token` zero, `amount` == msg.value)
    /// or an ERC-20 (`amount` pulled with transferFrom; what actually arrived is escrowed).
    /// Round 0 opens now; round r opens `r * period` later (see `schedule`).
    /// @return taskId the new task's id (starting at 1)
    function createTask(TaskParams calldata p, address token, uint256 amount)
        external
        payable
        nonReentrant
        returns (uint256 taskId)
    {
        _checkParams(p);
        if (token != address(0) && token.code.length == 0) revert MarketBadToken(token);
        uint256 received = _receive(token, amount);
        // every round's pool must hold at least one unit
        if (received < p.rounds) revert MarketRewardTooSmall(received, p.rounds);
        if (received > MAX_REWARD) revert MarketRewardTooLarge(received);

        taskId = ++_taskCount;
        Task storage t = _tasks[taskId];
        t.owner = msg.sender;
        t.createdBlock = uint32(block.number);
        t.startAt = uint32(block.timestamp);
        t.feeBps = p.feeBps;
        t.panel = p.panel;
        t.quorum = p.quorum;
        t.backup = p.backup;
        // _checkParams bounds every value below to its field's width
        t.rounds = uint16(p.rounds);
        t.token = token;
        t.submitWindow = uint24(p.submitWindow);
        t.revealWindow = uint24(p.revealWindow);
        t.resultWindow = uint24(p.resultWindow);
        // the availability window that ends each round is as long as its reveal window
        t.period = uint32(
            uint256(p.submitWindow) + p.revealWindow * 2 + p.resultWindow * (p.backup ? 2 : 1)
        );
        t.maxTrainers = uint16(p.maxTrainers);
        t.emptyRoundsToReclaim = uint16(p.emptyRoundsToReclaim);
        t.verifier = p.verifier;
        t.countRound = type(uint16).max; // no round counted yet
        t.reward = uint128(received);
        t.escrow = uint128(received);
        t.stake = p.stake;
        t.submissionsDigest = keccak256(abi.encode(taskId));
        t.latestModelCid = p.initialModelCid;
        t.specCid = p.specCid;
        t.validationCommitment = p.validationCommitment;
        emit TaskCreated(taskId, msg.sender, token, received, p.rounds, p.specCid);
    }

    /// @notice After `emptyRoundsToReclaim` empty rounds in a row (nothing revealed), the owner takes
    /// back every pool not yet settled and the task ends (stakes become withdrawable; stakes lost and
    /// not yet paid out go to the trainers still holding one).
    function reclaimUnused(uint256 taskId) external nonReentrant {
        Task storage t = _liveTask(taskId);
        if (msg.sender != t.owner) revert MarketNotOwner(msg.sender);
        uint256 needed = t.emptyRoundsToReclaim;
        if (needed == 0 || t.emptyStreak < needed) revert MarketNotAbandoned(needed, t.emptyStreak);
        (uint256 committed,,) = _counts(t);
        if (committed != 0) revert MarketRoundHasSubmissions(t.currentRound);

        uint256 round = t.currentRound;
        uint256 amount = uint256(t.escrow) + t.carryPool + _payCarriedStakes(t, taskId, round);
        t.escrow = 0;
        t.carryPool = 0;
        t.refunded += uint128(amount);
        t.currentRound = t.rounds;
        emit TaskReclaimed(taskId, amount);
        emit TaskFinished(taskId);
    }

    /// @notice The owner withdraws every refund of `taskId` (unearned pools).
    function withdrawRefund(uint256 taskId) external nonReentrant {
        Task storage t = _existingTask(taskId);
        if (msg.sender != t.owner) revert MarketNotOwner(msg.sender);
        uint256 amount = t.refunded - t.refundsWithdrawn;
        if (amount == 0) revert MarketNothingToWithdraw();
        t.refundsWithdrawn = t.refunded;
        emit RefundWithdrawn(taskId, msg.sender, amount);
        _pay(t.token, payable(msg.sender), amount);
    }

    // ---------------------------------------------------------------- trainer

    /// @notice Join a task as a trainer (not as its owner or an aggregator), depositing the task's
    /// stake (ETH as msg.value, or an ERC-20 pulled with transferFrom). A joined trainer whose stake
    /// was lost or given back calls this again to top it up.
    function join(uint256 taskId) external payable nonReentrant {
        Task storage t = _liveTask(taskId);
        if (msg.sender == t.owner || registry.isActive(msg.sender)) revert MarketRoleConflict(msg.sender);
        Seat storage s = _seats[taskId][msg.sender];
        uint256 held = _stakes[taskId][msg.sender];
        uint256 due = t.stake > held ? t.stake - held : 0;
        uint256 index = s.index;
        if (index == 0) {
            if (t.freeCount != 0) {
                index = _freeSeats[taskId][--t.freeCount]; // a seat someone gave up
            } else {
                if (t.trainerCount >= t.maxTrainers) revert MarketTaskFull(t.maxTrainers);
                index = ++t.trainerCount; // <= maxTrainers <= 256
            }
            s.index = uint16(index);
            _trainerAt[taskId][index] = msg.sender;
        } else if (due == 0) {
            revert MarketAlreadyJoined(msg.sender);
        }
        if (_receive(t.token, due) != due) revert MarketWrongValue(due, 0);
        if (due != 0) {
            _stakes[taskId][msg.sender] = held + due;
            t.stakesHeld += uint128(due);
        }
        s.staked = true;
        emit TrainerJoined(taskId, msg.sender, index, held + due);
    }

    /// @notice Commit to this round's update: `keccak256(abi.encode(cid, commitment, salt, trainer,
    /// taskId, round))` with the CID's sha2-256 digest, the update's (sketch) commitment and a secret salt.
    function commit(uint256 taskId, uint256 round, bytes32 hash) external {
        Task storage t = _liveTask(taskId);
        Seat storage s = _seats[taskId][msg.sender];
        if (s.index == 0) revert MarketNotJoined(msg.sender);
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        uint256 opensAt = _openAt(t, round);
        if (block.timestamp < opensAt) revert MarketRoundNotOpen(opensAt);
        uint256 deadline = opensAt + t.submitWindow;
        if (block.timestamp >= deadline) revert MarketSubmissionClosed(deadline);
        if (t.countRound != round) {
            t.countRound = uint16(round);
            t.committedCount = 0;
            t.revealedCount = 0;
            t.sealBlock = 0;
        }
        if (t.committedCount >= t.maxTrainers) revert MarketSubmissionClosed(block.timestamp);
        if (!s.staked) revert MarketStakeTooLow(t.stake, _stakes[taskId][msg.sender]);
        if (hash == bytes32(0)) revert MarketZeroCid();
        // round < rounds <= MAX_ROUNDS, so the tag round + 1 fits in 32 bits.
        uint32 tag = uint32(round + 1);
        if (s.committedTag == tag) revert MarketAlreadySubmitted(msg.sender);
        s.committedTag = tag;
        _commitments[taskId][msg.sender] = hash;
        t.committedCount += 1;
        emit UpdateCommitted(taskId, round, msg.sender, hash);
    }

    /// @notice Reveal this round's update once submissions are closed: the CID's digest, its
    /// commitment and the salt that hash to what was committed. The last committer to reveal
    /// closes the reveal window.
    function reveal(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment, bytes32 salt) external {
        Task storage t = _liveTask(taskId);
        Seat storage s = _seats[taskId][msg.sender];
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        uint32 tag = uint32(round + 1);
        if (s.committedTag != tag) revert MarketNotCommitted(msg.sender);
        (uint256 commitDeadline, uint256 revealDeadline) = _revealWindow(t, round);
        if (block.timestamp < commitDeadline && t.committedCount < t.maxTrainers) {
            revert MarketRevealNotOpen(commitDeadline);
        }
        if (block.timestamp >= revealDeadline || t.sealBlock != 0) revert MarketRevealClosed(revealDeadline);
        if (s.revealedTag == tag) revert MarketAlreadyRevealed(msg.sender);
        if (cid == bytes32(0)) revert MarketZeroCid();
        bytes32 expected = keccak256(abi.encode(cid, commitment, salt, msg.sender, taskId, round));
        if (expected != _commitments[taskId][msg.sender]) revert MarketBadReveal();

        s.revealedTag = tag;
        uint16 revealed = t.revealedCount + 1;
        t.revealedCount = revealed;
        t.submissionsDigest = keccak256(abi.encode(t.submissionsDigest, s.index, cid, commitment));
        emit UpdateRevealed(taskId, round, msg.sender, s.index, cid, commitment);
        if (revealed == t.committedCount) {
            t.sealBlock = uint32(block.number);
            emit RoundSealed(taskId, round, block.number);
        }
    }

    /// @notice Close the current round's reveal window once its deadline passed (anyone may; the hash of
    /// this block then seeds the round). On a sealed round: keep its seed in storage while the seal
    /// block's hash is readable, or, once it is not (256 blocks later) and nobody kept it, seal it again
    /// here, so that a late result never gets a seed a revealer could have computed in advance. A first seal
    /// or a new one only while half the panel's result window is left: a round nobody sealed by then settles
    /// by the fallback, which blames no aggregator (no panel was drawn in time).
    function seal(uint256 taskId) external {
        Task storage t = _liveTask(taskId);
        uint256 round = t.currentRound;
        (, uint256 revealDeadline) = _revealWindow(t, round);
        (, uint256 revealed, uint256 sealBlock) = _counts(t);
        if (revealed == 0) revert MarketNothingRevealed();
        if (sealBlock == 0) {
            if (block.timestamp < revealDeadline) revert MarketRevealOpen(revealDeadline);
        } else {
            if (_seeds[taskId][round] != bytes32(0)) revert MarketAlreadySealed();
            // no new seed (hence no new panel) once every result window is over
            uint256 resultsEnd = _resultsEnd(t, round);
            if (block.timestamp >= resultsEnd) revert MarketResultWindowClosed(resultsEnd);
            // sealed again: the panel is still drawn as of the first seal (later registrations never count)
            if (_drawBlocks[taskId][round] == 0) _drawBlocks[taskId][round] = sealBlock;
            if (block.number <= sealBlock) revert MarketNotSealed(sealBlock);
            bytes32 h = blockhash(sealBlock);
            if (h != bytes32(0)) {
                bytes32 seed = keccak256(abi.encode(h, sealBlock, taskId, round));
                _seeds[taskId][round] = seed;
                emit SeedKept(taskId, round, seed);
                return;
            }
        }
        // a new seal draws a new panel: only while it has at least half the panel's result window left to post in
        // (else a trainer could seal at the window's end and have a panel that never had a window fined as silent)
        uint256 lastSeal = revealDeadline + t.resultWindow / 2;
        if (block.timestamp >= lastSeal) revert MarketResultWindowClosed(lastSeal);
        t.sealBlock = uint32(block.number);
        emit RoundSealed(taskId, round, block.number);
    }

    /// @notice When no result came for the current round, prove the update revealed this round available
    /// by posting its bytes (their sha2-256 is the revealed CID's digest), with the commitment and salt
    /// of the reveal. Allowed in the availability window that follows every result window; the round's
    /// fallback pays only updates proved available.
    function proveAvailable(uint256 taskId, uint256 round, bytes32 commitment, bytes32 salt, bytes calldata update)
        external
    {
        Task storage t = _liveTask(taskId);
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        Seat storage s = _seats[taskId][msg.sender];
        uint32 tag = uint32(round + 1);
        if (s.revealedTag != tag) revert MarketNotRevealed(msg.sender);
        uint256 opensAt = _resultsEnd(t, round);
        if (block.timestamp < opensAt) revert MarketNotAvailabilityWindow(opensAt);
        if (s.availableTag == tag) revert MarketAlreadyAvailable(msg.sender);
        bytes32 cid = sha256(update);
        bytes32 expected = keccak256(abi.encode(cid, commitment, salt, msg.sender, taskId, round));
        if (expected != _commitments[taskId][msg.sender]) revert MarketNotTheUpdate(msg.sender);
        s.availableTag = tag;
        emit UpdateAvailable(taskId, round, msg.sender, cid);
    }

    /// @notice Leave a task between rounds (not while committed to the current round): the stake becomes
    /// withdrawable and the seat goes to the next joiner. Join again to take part again.
    function leave(uint256 taskId) external {
        Task storage t = _liveTask(taskId);
        Seat storage s = _seats[taskId][msg.sender];
        if (s.index == 0) revert MarketNotJoined(msg.sender);
        if (s.committedTag == t.currentRound + 1) revert MarketCannotLeave(msg.sender);
        uint256 held = _stakes[taskId][msg.sender];
        _stakes[taskId][msg.sender] = 0;
        if (held != 0) {
            t.stakesHeld -= uint128(held);
            s.earned += uint128(held);
            emit StakeReturned(taskId, msg.sender, held);
        }
        _freeSeat(t, taskId, s);
    }

    /// @dev Give a seat up: the next joiner takes it; its former holder joins again for another seat.
    function _freeSeat(Task storage t, uint256 taskId, Seat storage s) private {
        uint256 index = s.index;
        _trainerAt[taskId][index] = address(0);
        _freeSeats[taskId][t.freeCount++] = index;
        s.index = 0;
        s.staked = false;
        s.paid = false;
    }

    /// @notice Withdraw everything `taskId` owes the caller (credits, and the stake once the task ended).
    function withdraw(uint256 taskId) external {
        withdrawTo(taskId, payable(msg.sender));
    }

    /// @notice Withdraw everything `taskId` owes the caller to `recipient` (for an address that cannot receive).
    /// @dev Not `nonReentrant` (the guard's slot costs ~2,300 gas a call): every effect is written before the
    /// transfer, which is the last thing it does, so a re-entrant call sees the settled state (and finds
    /// nothing more to withdraw from this task).
    function withdrawTo(uint256 taskId, address payable recipient) public {
        if (recipient == address(0)) revert MarketZeroRecipient();
        Task storage t = _existingTask(taskId);
        Seat storage s = _seats[taskId][msg.sender];
        uint256 amount = s.earned;
        if (t.currentRound >= t.rounds) {
            uint256 held = _stakes[taskId][msg.sender];
            if (held != 0) {
                _stakes[taskId][msg.sender] = 0;
                t.stakesHeld -= uint128(held);
                amount += held;
                emit StakeReturned(taskId, msg.sender, held);
            }
        }
        if (amount == 0) revert MarketNothingToWithdraw();
        s.earned = 0;
        emit Withdrawn(taskId, msg.sender, recipient, amount);
        _pay(t.token, recipient, amount);
    }

    // ------------------------------------------------------------- aggregator

    /// @notice What an aggregator posts for a round besides the basis points and the proof.
    struct Result {
        bytes32 modelCid; // the new global model
        bytes32 receiptCid; // the round receipt
        bytes32 seed; // the round's seed (`roundSeed`), which the result was computed with
        uint256 lostMask; // bit j: the j-th revealed update was unavailable or invalid (0 bps, stake lost)
    }

    /// @notice Post the result of the current round: basis points per revealed update (join order)
    /// summing to 10,000, and `res`. The trainers of updates marked in `res.lostMask` lose their stakes
    /// to the paid trainers. Basis points may sum to 0 only when every revealed update is marked lost
    /// (or, on a proof task, the proof says so): then the pool and the lost stakes carry over to the
    /// next round's paid trainers, never back to the owner. The task's aggregator posts in the result
    /// window, its backup in the backup window.
    function postResult(uint256 taskId, uint256 round, Result calldata res, uint16[] calldata bps, bytes calldata proof)
        external
        nonReentrant
    {
        Task storage t = _liveTask(taskId);
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        if (res.modelCid == bytes32(0) || res.receiptCid == bytes32(0)) revert MarketZeroCid();
        address[] memory panel = _checkPoster(t, taskId, round, res.seed, _late(t, round));
        bool paid = _checkBasisPoints(t, bps, res.lostMask) != 0;
        if (t.verifier != address(0)) {
            if (!_verified(t, taskId, round, res, bps, proof)) revert MarketInvalidProof();
        } else if (!paid && res.lostMask != _allRevealed(bps.length)) {
            revert MarketBadBasisPoints(0); // nothing paid: only when every revealed update is marked lost
        }
        _decide(t, taskId, round, res, bps, panel, paid);
    }

    /// @dev Count the caller's vote; once `quorum` votes agree, pay the fee to the members that voted for the
    /// result, penalise the members that voted against it (and, in the backup window, the panel's silent
    /// members), and credit the round.
    function _decide(
        Task storage t,
        uint256 taskId,
        uint256 round,
        Result calldata res,
        uint16[] calldata bps,
        address[] memory panel,
        bool paid
    ) private {
        // what the panel agrees on: the model, the seed, the lost stakes and the pay (each member posts its own receipt)
        bytes32 h = keccak256(abi.encode(res.modelCid, res.seed, res.lostMask, bps));
        if (t.quorum > 1 && registry.tally(taskId, round, panel, h) + 1 < t.quorum) {
            // votes wait in the registry until `quorum` agree; a quorum of one decides at once (nothing to keep)
            _keepSeed(taskId, round, res.seed);
            _vote(t, taskId, round, h, panel);
            return;
        }
        // decided: every read first, then the market's own writes, then the registry's (the vote, the penalties)
        address[] memory offenders = _offenders(t, taskId, round, panel, h);
        address[] memory paidTo = offenders.length != 0 ? _paidTrainers(taskId, round, bps) : new address[](0);
        // a result that pays nobody fines only the silent (burned): a dissenter there may be an honest member that was
        // served bytes the majority was not, and a penalty would cost it bond for free
        if (offenders.length != 0 && paidTo.length == 0) offenders = registry.votersFor(taskId, round, offenders, bytes32(0));
        _payFee(t, taskId, round, _agreed(t, taskId, round, panel, h));
        uint256 credited = _payRound(t, taskId, round, bps, res.lostMask, paid);
        t.latestModelCid = res.modelCid;
        t.emptyStreak = 0;
        _settle(t, taskId, round, SETTLED_BY_RESULT, credited, 0, res);
        if (t.quorum > 1) _vote(t, taskId, round, h, panel);
        if (offenders.length != 0) registry.penalise(taskId, round, offenders, paidTo);
    }

    /// @notice On a task whose quorum is more than one, every drawn member (the panel and its backup) commits to
    /// its result before it posts it: `commitment` = keccak256(abi.encode(h, member)), with h =
    /// keccak256(abi.encode(modelCid, seed, lostMask, bps)) of the result it will post. Commitments are taken once
    /// per member until six eighths into the panel's result window; votes are taken once every drawn member has
    /// committed, or from seven eighths on. So no member (the backup included) sees another's result before it is
    /// bound to its own, and nobody earns a fee by copying one. The first commitment keeps the round's seed.
    function commitVote(uint256 taskId, uint256 round, bytes32 commitment) external {
        Task storage t = _liveTask(taskId);
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        bytes32 seed = _seed(t, taskId, round);
        _checkPoster(t, taskId, round, seed, true);
        uint256 closesAt = _resultTime(t, round, 6);
        if (block.timestamp >= closesAt) revert MarketVoteCommitsClosed(closesAt);
        _keepSeed(taskId, round, seed);
        registry.commitVote(taskId, round, msg.sender, commitment);
    }

    /// @dev Record the caller's vote, which must open its commitment (`commitVote`).
    function _vote(Task storage t, uint256 taskId, uint256 round, bytes32 h, address[] memory panel) private {
        registry.vote(taskId, round, msg.sender, h, panel, block.timestamp >= _resultTime(t, round, 7));
    }

    /// @dev Keep the round's seed, so nobody can seal the round again and draw another panel.
    function _keepSeed(uint256 taskId, uint256 round, bytes32 seed) private {
        if (_seeds[taskId][round] == bytes32(0)) {
            _seeds[taskId][round] = seed;
            emit SeedKept(taskId, round, seed);
        }
    }

    // --------------------------------------------------------------- liveness

    /// @notice Settle the current round without a result (anyone may). A round in which nothing was
    /// revealed is refunded to the owner (that round's pool only) once its reveal window is over; any
    /// other round, once its availability window is over, is split equally among the updates proved
    /// available (committers that did not reveal lose their stakes to them); with none proved, its pool
    /// and those stakes carry over to the next round.
    function settleWithoutResult(uint256 taskId) external nonReentrant {
        Task storage t = _liveTask(taskId);
        uint256 round = t.currentRound;
        (uint256 committed, uint256 revealed,) = _counts(t);
        (uint256 commitDeadline, uint256 revealDeadline) = _revealWindow(t, round);
        if (revealed == 0) {
            // nothing can be revealed any more once the reveal window is over (or nobody committed in time)
            bool over = block.timestamp >= revealDeadline || (committed == 0 && block.timestamp >= commitDeadline);
            if (!over) revert MarketRevealOpen(committed == 0 ? commitDeadline : revealDeadline);
            uint256 lost = _loseUnrevealed(t, taskId, round, 0);
            t.carry += uint128(lost);
            t.emptyStreak += 1;
            _settle(t, taskId, round, SETTLED_BY_REFUND, 0, _roundPool(t, round), _noResult());
            return;
        }
        uint256 roundEnd = _openAt(t, round + 1);
        if (block.timestamp < roundEnd) revert MarketResultWindowOpen(roundEnd);
        // a proof task's members may have been unable to post (no proof backs a round with no valid update): only a
        // task without a verifier, whose panel can always post a result, blames its silent members here
        address[] memory silent = t.verifier == address(0) ? _silent(t, taskId, round) : new address[](0);
        address[] memory provers = silent.length != 0 ? _provers(taskId, round) : new address[](0);
        uint256 credited = _splitAvailable(t, taskId, round);
        t.emptyStreak = 0;
        _settle(t, taskId, round, SETTLED_BY_FALLBACK, credited, 0, _noResult());
        // with no update proved available, the silent members' penalties are burned (nobody to credit them to)
        if (silent.length != 0) registry.penalise(taskId, round, silent, provers);
    }

    // ------------------------------------------------------------------ views

    /// @notice Number of tasks created so far (ids run from 1 to this).
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @notice Everything stored about a task.
    function getTask(uint256 taskId) external view returns (TaskView memory v) {
        Task storage t = _existingTask(taskId);
        v.owner = t.owner;
        v.createdBlock = t.createdBlock;
        v.drawBlock = uint32(_drawBlock(t, taskId));
        v.startAt = t.startAt;
        v.currentRound = t.currentRound;
        v.feeBps = t.feeBps;
        v.panel = t.panel;
        v.quorum = t.quorum;
        v.rounds = t.rounds;
        v.submitWindow = t.submitWindow;
        v.revealWindow = t.revealWindow;
        v.period = t.period;
        v.backup = t.backup;
        v.resultWindow = t.resultWindow;
        v.trainerCount = t.trainerCount;
        v.emptyRoundsToReclaim = t.emptyRoundsToReclaim;
        v.emptyStreak = t.emptyStreak;
        v.token = t.token;
        v.verifier = t.verifier;
        v.committedCount = t.committedCount;
        v.revealedCount = t.revealedCount;
        v.countRound = t.countRound;
        v.maxTrainers = t.maxTrainers;
        v.sealBlock = t.sealBlock;
        v.reward = t.reward;
        v.refunded = t.refunded;
        v.escrow = t.escrow;
        v.credited = t.credited;
        v.refundsWithdrawn = t.refundsWithdrawn;
        v.stake = t.stake;
        v.stakesHeld = t.stakesHeld;
        v.carry = t.carry;
        v.carryPool = t.carryPool;
        v.fees = t.fees;
        v.submissionsDigest = t.submissionsDigest;
        v.latestModelCid = t.latestModelCid;
        v.specCid = t.specCid;
        v.validationCommitment = t.validationCommitment;
    }

    /// @notice Trainers that revealed in the current round, in join order (the order `bps` follows).
    function getRevealed(uint256 taskId) external view returns (address[] memory out) {
        Task storage t = _existingTask(taskId);
        (, uint256 revealed,) = _counts(t);
        out = new address[](revealed);
        uint32 tag = t.currentRound + 1; // currentRound < rounds <= 10_000
        uint256 j = 0;
        for (uint256 i = 1; i <= t.trainerCount && j < out.length; ++i) {
            address trainer = _trainerAt[taskId][i];
            if (_seats[taskId][trainer].revealedTag == tag) out[j++] = trainer;
        }
    }

    /// @notice A trainer's seat: join index (0: not joined), last rounds committed, revealed and proved
    /// available (plus one), credits not withdrawn, stake held and last commitment.
    struct SeatView {
        uint256 index;
        uint256 committedTag;
        uint256 revealedTag;
        uint256 earned;
        uint256 stake;
        bytes32 hash;
        uint256 availableTag;
        bool paid; // a round paid it since it took this seat (it shares lost stakes left at the task's end)
    }

    /// @notice A trainer's seat (see `SeatView`).
    function seat(uint256 taskId, address trainer) external view returns (SeatView memory v) {
        Seat storage s = _seats[taskId][trainer];
        v.index = s.index;
        v.committedTag = s.committedTag;
        v.revealedTag = s.revealedTag;
        v.earned = s.earned;
        v.stake = _stakes[taskId][trainer];
        v.hash = _commitments[taskId][trainer];
        v.availableTag = s.availableTag;
        v.paid = s.paid;
    }



    /// @notice A trainer's 1-based join index (0 if it has not joined).
    function trainerIndex(uint256 taskId, address trainer) external view returns (uint256) {
        return _seats[taskId][trainer].index;
    }

    /// @notice The current round's times (unix seconds): it opens, submissions close, reveals close,
    /// the aggregator's result window closes, the backup's closes (equal to the previous one without a
    /// backup). The availability window follows, as long as the reveal window; the next round opens then.
    function schedule(uint256 taskId)
        external
        view
        returns (uint256 opensAt, uint256 submitDeadline, uint256 revealDeadline, uint256 resultDeadline, uint256 finalDeadline)
    {
        Task storage t = _existingTask(taskId);
        uint256 round = t.currentRound < t.rounds ? t.currentRound : t.rounds - 1;
        opensAt = _openAt(t, round);
        (submitDeadline, revealDeadline) = _revealWindow(t, round);
        resultDeadline = revealDeadline + t.resultWindow;
        finalDeadline = _resultsEnd(t, round);
    }

    /// @notice Whether `round`'s seed is kept in storage (then the round can no longer be sealed again).
    function seedKept(uint256 taskId, uint256 round) external view returns (bool) {
        return _seeds[taskId][round] != bytes32(0);
    }

    /// @notice The current round's seed: readable from the block after the one that closed its reveal window.
    function roundSeed(uint256 taskId) external view returns (bytes32) {
        Task storage t = _liveTask(taskId);
        return _seed(t, taskId, t.currentRound);
    }

    /// @notice The pool of `round` of `taskId`.
    function roundPool(uint256 taskId, uint256 round) external view returns (uint256) {
        Task storage t = _existingTask(taskId);
        if (round >= t.rounds) revert MarketWrongRound(t.rounds - 1, round);
        return _roundPool(t, round);
    }

    /// @notice What `trainer` can withdraw from `taskId` now.
    function owed(uint256 taskId, address trainer) external view returns (uint256) {
        Task storage t = _existingTask(taskId);
        uint256 amount = _seats[taskId][trainer].earned;
        if (t.currentRound >= t.rounds) amount += _stakes[taskId][trainer];
        return amount;
    }



    // --------------------------------------------------------------- internal

    function _checkParams(TaskParams calldata p) private view {
        if (p.verifier != address(0)) _checkVerifier(p.verifier);
        uint256 k = p.panel;
        if (k == 0 || k > MAX_PANEL || uint256(p.quorum) * 2 <= k || p.quorum > k) revert MarketBadPanel(k, p.quorum);
        if (p.feeBps > MAX_FEE_BPS) revert MarketBadFee(p.feeBps);
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert MarketBadRounds(p.rounds);
        if (
            p.submitWindow < MIN_SUBMIT_WINDOW || p.revealWindow < MIN_REVEAL_WINDOW
                || p.resultWindow < MIN_RESULT_WINDOW || p.submitWindow > MAX_WINDOW || p.revealWindow > MAX_WINDOW
                || p.resultWindow > MAX_WINDOW || (p.quorum > 1 && p.resultWindow < MIN_QUORUM_RESULT_WINDOW)
        ) revert MarketBadWindows();
        if (p.maxTrainers == 0 || p.maxTrainers > MAX_TRAINERS) revert MarketBadMaxTrainers(p.maxTrainers);
        if (p.emptyRoundsToReclaim > MAX_ROUNDS) revert MarketBadRounds(p.emptyRoundsToReclaim);
        if (p.initialModelCid == bytes32(0)) revert MarketZeroCid();
        if (p.stake > MAX_STAKE) revert MarketStakeTooLarge(p.stake);
        // a member's bond stays at stake for any round it may be drawn for, and its registry entry is not taken by
        // another until that round and the next are over: two rounds must fit in the exit delay
        uint256 period = uint256(p.submitWindow) + p.revealWindow * 2 + p.resultWindow * (p.backup ? 2 : 1);
        if (period * 2 > registry.exitDelay()) revert MarketRoundTooLong(period, registry.exitDelay());
        uint256 need = uint256(p.panel) + (p.backup ? 1 : 0);
        // the owner is never drawn: a registered owner does not count
        uint256 have = registry.activeCount() - (registry.isActive(msg.sender) ? 1 : 0);
        if (have < need) revert MarketFewAggregators(need, have);
    }

    /// @dev A contract answering ERC-165 for IRoundVerifier whose code, and every component's, is allowed.
    function _checkVerifier(address verifier) private view {
        if (!ERC165Checker.supportsInterface(verifier, type(IRoundVerifier).interfaceId)) {
            revert MarketBadVerifier(verifier);
        }
        _checkCode(verifier, verifier, 1);
        address[] memory parts = IRoundVerifier(verifier).components();
        for (uint256 i = 0; i < parts.length; ++i) _checkCode(verifier, parts[i], 2);
    }

    function _checkCode(address verifier, address code, uint8 kind) private view {
        bytes32 h = code.codehash;
        if (code.code.length == 0 || verifierCodeKind[h] != kind) revert MarketVerifierNotAllowed(verifier, h);
    }

    /// @dev Take `amount` of `token` from the caller (ETH: exactly msg.value); what arrived.
    function _receive(address token, uint256 amount) private returns (uint256 received) {
        if (token == address(0)) {
            if (msg.value != amount) revert MarketWrongValue(amount, msg.value);
            return msg.value;
        }
        if (msg.value != 0) revert MarketWrongValue(0, msg.value);
        if (amount == 0) return 0;
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        received = IERC20(token).balanceOf(address(this)) - before;
    }

    function _existingTask(uint256 taskId) private view returns (Task storage t) {
        t = _tasks[taskId];
        if (t.rounds == 0) revert MarketUnknownTask(taskId);
    }

    function _liveTask(uint256 taskId) private view returns (Task storage t) {
        t = _existingTask(taskId);
        if (t.currentRound >= t.rounds) revert MarketTaskFinished(taskId);
    }

    function _openAt(Task storage t, uint256 round) private view returns (uint256) {
        return uint256(t.startAt) + round * t.period;
    }

    function _revealWindow(Task storage t, uint256 round)
        private
        view
        returns (uint256 commitDeadline, uint256 revealDeadline)
    {
        commitDeadline = _openAt(t, round) + t.submitWindow;
        revealDeadline = commitDeadline + t.revealWindow;
    }

    /// @dev When the last result window of `round` closes (the backup's, or the aggregator's without one).
    function _resultsEnd(Task storage t, uint256 round) private view returns (uint256) {
        (, uint256 revealDeadline) = _revealWindow(t, round);
        return revealDeadline + uint256(t.resultWindow) * (t.backup ? 2 : 1);
    }

    /// @dev (committed, revealed, sealBlock) of the current round.
    function _counts(Task storage t) private view returns (uint256, uint256, uint256) {
        if (t.countRound != t.currentRound) return (0, 0, 0);
        return (t.committedCount, t.revealedCount, t.sealBlock);
    }

    /// @dev keccak256(abi.encode(blockhash(sealBlock), sealBlock, taskId, round)), or the seed `seal` kept;
    /// never a value computable before the seal block exists (an expired hash is refused: seal again).
    function _seed(Task storage t, uint256 taskId, uint256 round) private view returns (bytes32) {
        bytes32 kept = _seeds[taskId][round];
        if (kept != bytes32(0)) return kept;
        (, uint256 revealed, uint256 sealBlock) = _counts(t);
        if (revealed == 0) revert MarketNothingRevealed();
        if (sealBlock == 0 || block.number <= sealBlock) revert MarketNotSealed(sealBlock);
        bytes32 h = blockhash(sealBlock);
        if (h == bytes32(0)) revert MarketSeedExpired(sealBlock);
        return keccak256(abi.encode(h, sealBlock, taskId, round));
    }

    function _checkSeed(Task storage t, uint256 taskId, uint256 round, bytes32 seed) private view {
        bytes32 expected = _seed(t, taskId, round);
        if (seed != expected) revert MarketWrongSeed(expected);
    }

    /// @dev Results (and commitments) are taken from the reveal's close until the last result deadline, with the
    /// round's seed, from the round's panel (with `backupToo`, also from its backup: in the backup window, or a
    /// commitment), never from a trainer of the task.
    function _checkPoster(Task storage t, uint256 taskId, uint256 round, bytes32 seed, bool backupToo)
        private
        view
        returns (address[] memory panel)
    {
        (, uint256 revealed, uint256 sealBlock) = _counts(t);
        if (revealed == 0) revert MarketNothingRevealed();
        (, uint256 revealDeadline) = _revealWindow(t, round);
        if (sealBlock == 0) revert MarketRevealOpen(revealDeadline);
        uint256 finalDeadline = _resultsEnd(t, round);
        if (block.timestamp >= finalDeadline) revert MarketResultWindowClosed(finalDeadline);
        _checkSeed(t, taskId, round, seed);
        panel = _panel(t, taskId, seed);
        if (!_onPanel(t, panel, msg.sender, backupToo) || _seats[taskId][msg.sender].index != 0) {
            revert MarketNotAggregator(msg.sender);
        }
    }

    /// @dev The round's panel then (with a backup) its backup, drawn with the round's seed as of its seal
    /// block, never the owner.
    function _panel(Task storage t, uint256 taskId, bytes32 seed) private view returns (address[] memory) {
        // as of the round's first seal: members registered after it never count, even when the round is sealed again
        return registry.draw(seed, _drawBlock(t, taskId), uint256(t.panel) + (t.backup ? 1 : 0), t.owner);
    }

    /// @dev The current round's first seal block (the seal block, unless the round was sealed again).
    function _drawBlock(Task storage t, uint256 taskId) private view returns (uint256) {
        uint256 first = _drawBlocks[taskId][t.currentRound];
        return first != 0 ? first : t.sealBlock;
    }

    /// @dev A panel member, or in the backup window also the backup.
    function _onPanel(Task storage t, address[] memory panel, address who, bool late) private view returns (bool) {
        uint256 k = t.panel;
        for (uint256 i = 0; i < panel.length; ++i) {
            if (panel[i] == who) return i < k || late;
        }
        return false;
    }

    /// @dev Pay the fee to the members that voted for the decided result `h`; penalise the offenders, to the
    /// trainers the result pays. Returns the fee.
    function _offenders(Task storage t, uint256 taskId, uint256 round, address[] memory panel, bytes32 h)
        private
        view
        returns (address[] memory offenders)
    {
        if (t.quorum > 1) return registry.offenders(taskId, round, panel, t.panel, h, _late(t, round), msg.sender);
        offenders = new address[](panel[0] != msg.sender ? 1 : 0);
        // a panel of one whose member did not post: the backup did, in its window; the member was silent
        if (offenders.length != 0) offenders[0] = panel[0];
    }

    /// @dev The members that posted the decided result `h`: the caller (whose vote decides), and those before it.
    function _agreed(Task storage t, uint256 taskId, uint256 round, address[] memory panel, bytes32 h)
        private
        view
        returns (address[] memory agreed)
    {
        if (t.quorum == 1) {
            agreed = new address[](1);
            agreed[0] = msg.sender;
            return agreed;
        }
        address[] memory before = registry.votersFor(taskId, round, panel, h);
        agreed = new address[](before.length + 1);
        for (uint256 i = 0; i < before.length; ++i) agreed[i] = before[i];
        agreed[before.length] = msg.sender;
    }

    /// @dev The fee on the round's pool, split equally among the members that voted for the decided result.
    function _payFee(Task storage t, uint256 taskId, uint256 round, address[] memory agreed) private {
        uint256 fee = _fee(t, round);
        if (fee == 0) return;
        uint256 n = agreed.length;
        uint256 paid = 0;
        for (uint256 j = 1; j <= n; ++j) {
            uint256 amount = (fee * j) / n - paid;
            paid += amount;
            _seats[taskId][agreed[j - 1]].earned += uint128(amount);
            emit FeeCredited(taskId, round, agreed[j - 1], amount);
        }
        t.fees += uint128(fee);
    }

    /// @dev No result came: every drawn member that did not post (they lose a penalty to the trainers that proved
    /// their update available); nobody when the round's seed can no longer be had (no panel to blame).
    function _silent(Task storage t, uint256 taskId, uint256 round) private view returns (address[] memory) {
        bytes32 seed = _seedIfKnown(t, taskId, round);
        // settled a period late or more, the draw may no longer be the one the round had: blame nobody
        if (seed == bytes32(0) || block.timestamp >= _openAt(t, round + 2)) return new address[](0);
        return registry.offenders(taskId, round, _panel(t, taskId, seed), t.panel, bytes32(0), true, address(0));
    }

    /// @dev True once the panel's result window of `round` is over (the backup's window, or after it).
    function _late(Task storage t, uint256 round) private view returns (bool) {
        return block.timestamp >= _resultTime(t, round, 8);
    }

    /// @dev `eighths` eighths into the panel's result window of `round`. Its vote commitments close at 6/8 (a first
    /// seal comes at least half a window before its end, so a drawn panel has at least a quarter of it to commit
    /// in); votes open at 7/8 unless every drawn member committed: the gap keeps a vote sent early by a clock
    /// running ahead from being seen while a commitment can still land.
    function _resultTime(Task storage t, uint256 round, uint256 eighths) private view returns (uint256) {
        (, uint256 revealDeadline) = _revealWindow(t, round);
        return revealDeadline + (uint256(t.resultWindow) * eighths) / 8;
    }

    /// @dev The aggregators' fee on a round's pool.
    function _fee(Task storage t, uint256 round) private view returns (uint256) {
        return (_roundPool(t, round) * t.feeBps) / BPS;
    }

    /// @dev The round's seed when one can be had without reverting (kept, or the seal block's hash readable).
    function _seedIfKnown(Task storage t, uint256 taskId, uint256 round) private view returns (bytes32) {
        bytes32 kept = _seeds[taskId][round];
        if (kept != bytes32(0)) return kept;
        (,, uint256 sealBlock) = _counts(t);
        if (sealBlock == 0 || block.number <= sealBlock) return bytes32(0);
        bytes32 h = blockhash(sealBlock);
        return h == bytes32(0) ? bytes32(0) : keccak256(abi.encode(h, sealBlock, taskId, round));
    }

    /// @dev This round's revealed trainers the result pays (bps > 0), in join order.
    function _paidTrainers(uint256 taskId, uint256 round, uint16[] calldata bps) private view returns (address[] memory out) {
        return _trainersWhere(taskId, round, bps, false);
    }

    /// @dev This round's trainers that proved their update available.
    function _provers(uint256 taskId, uint256 round) private view returns (address[] memory) {
        return _trainersWhere(taskId, round, new uint16[](0), true);
    }

    function _trainersWhere(uint256 taskId, uint256 round, uint16[] memory bps, bool proved)
        private
        view
        returns (address[] memory out)
    {
        Task storage t = _tasks[taskId];
        uint32 tag = uint32(round + 1);
        out = new address[](t.trainerCount);
        uint256 n = 0;
        uint256 j = 0;
        for (uint256 i = 1; i <= t.trainerCount; ++i) {
            address trainer = _trainerAt[taskId][i];
            Seat storage s = _seats[taskId][trainer];
            if (proved) {
                if (s.availableTag == tag) out[n++] = trainer;
            } else if (s.revealedTag == tag && trainer != address(0)) {
                if (bps[j++] != 0) out[n++] = trainer;
            }
        }
        assembly ("memory-safe") {
            mstore(out, n)
        }
    }

    function _verified(
        Task storage t,
        uint256 taskId,
        uint256 round,
        Result calldata res,
        uint16[] calldata bps,
        bytes calldata proof
    ) private view returns (bool) {
        return IRoundVerifier(t.verifier).verifyRound(
            taskId, round, t.submissionsDigest, res.seed, res.modelCid, res.receiptCid, bps, res.lostMask, proof
        );
    }

    /// @dev One entry per revealed update, summing to BPS (or to 0, checked by the caller); lost ones get 0.
    function _checkBasisPoints(Task storage t, uint16[] calldata bps, uint256 lostMask)
        private
        view
        returns (uint256 sum)
    {
        (, uint256 n,) = _counts(t);
        if (bps.length != n) revert MarketWrongLength(n, bps.length);
        for (uint256 j = 0; j < n; ++j) {
            if (bps[j] != 0 && (lostMask >> j) & 1 == 1) revert MarketPaidAndLost(j);
            sum += bps[j];
        }
        if (n < 256 && lostMask >> n != 0) revert MarketWrongLength(n, bps.length);
        if (sum != BPS && sum != 0) revert MarketBadBasisPoints(sum);
    }

    /// @dev Take the stakes of this round's committers that did not reveal, and of the revealed updates
    /// marked in `lostMask` (by revealed position); return their sum.
    function _loseUnrevealed(Task storage t, uint256 taskId, uint256 round, uint256 lostMask)
        private
        returns (uint256 lost)
    {
        uint32 tag = uint32(round + 1);
        uint256 count = t.trainerCount;
        uint256 j = 0;
        for (uint256 i = 1; i <= count; ++i) {
            address trainer = _trainerAt[taskId][i];
            Seat storage s = _seats[taskId][trainer];
            if (s.committedTag != tag) continue;
            bool revealed = s.revealedTag == tag;
            bool marked = revealed && (lostMask >> j) & 1 == 1;
            if (revealed) ++j;
            if (revealed && !marked) continue;
            uint256 held = _stakes[taskId][trainer];
            if (held == 0) continue;
            _stakes[taskId][trainer] = 0;
            lost += held;
            emit StakeLost(taskId, round, trainer, held);
            // a committer that did not reveal gives its seat up now; a marked update's seat is freed after
            // the credits (whose order follows the seats)
            if (!revealed) _freeSeat(t, taskId, s);
        }
        if (lost != 0) t.stakesHeld -= uint128(lost);
    }

    /// @dev Pay the round: its pool, the stakes lost this round and any carried pools and stakes go to the
    /// paid updates by `bps`. With `paid` false (every update invalid) all of it carries to the next round.
    function _payRound(
        Task storage t,
        uint256 taskId,
        uint256 round,
        uint16[] calldata bps,
        uint256 lostMask,
        bool paid
    ) private returns (uint256 credited) {
        uint256 lost = _loseUnrevealed(t, taskId, round, lostMask);
        if (!paid) {
            _carryOver(t, round, lost, _fee(t, round));
        } else {
            credited = _credit(t, taskId, round, _takeCarried(t, round) - _fee(t, round) + lost, bps, bps.length);
        }
        if (lostMask != 0) _freeMarked(t, taskId, round, lostMask);
    }

    /// @dev Free the seats of the revealed updates marked lost (after crediting: `bps` follows the seats).
    function _freeMarked(Task storage t, uint256 taskId, uint256 round, uint256 lostMask) private {
        uint256 count = t.trainerCount;
        uint256 j = 0;
        for (uint256 i = 1; i <= count; ++i) {
            Seat storage s = _seats[taskId][_trainerAt[taskId][i]];
            if (s.revealedTag != round + 1 || s.index == 0) continue;
            if ((lostMask >> j) & 1 == 1) _freeSeat(t, taskId, s);
            ++j;
        }
    }

    /// @dev The round's pool (less the fee paid on it) and the stakes lost this round carry over to the next
    /// round's paid trainers.
    function _carryOver(Task storage t, uint256 round, uint256 lost, uint256 fee) private {
        t.carryPool += uint128(_roundPool(t, round) - fee);
        if (lost != 0) t.carry += uint128(lost);
    }

    /// @dev The round's pool plus every carried pool and stake, which the round now pays out.
    function _takeCarried(Task storage t, uint256 round) private returns (uint256 total) {
        total = _roundPool(t, round) + t.carry + t.carryPool;
        if (t.carry != 0) t.carry = 0;
        if (t.carryPool != 0) t.carryPool = 0;
    }

    /// @dev The fallback: the pool, the stakes lost this round and carried ones split equally among the
    /// updates proved available; with none, they carry over (an unchecked update is never paid).
    function _splitAvailable(Task storage t, uint256 taskId, uint256 round) private returns (uint256 credited) {
        uint256 lost = _loseUnrevealed(t, taskId, round, 0);
        uint32 tag = uint32(round + 1);
        uint256 n = 0;
        for (uint256 i = 1; i <= t.trainerCount; ++i) {
            if (_seats[taskId][_trainerAt[taskId][i]].availableTag == tag) ++n;
        }
        if (n == 0) {
            _carryOver(t, round, lost, 0);
            return 0;
        }
        credited = _credit(t, taskId, round, _takeCarried(t, round) + lost, new uint16[](0), n);
    }

    /// @dev Stakes lost in rounds that paid nobody, paid out when the task ends: split equally among the
    /// trainers still holding a stake that a round paid since they took their seat; returned (for the owner)
    /// only when there is none, i.e. when no trainer holding a stake ever contributed anything the task paid
    /// for (paying whoever merely holds a stake would let sybils that join late take it, and the trainer that
    /// lost it buy it back).
    function _payCarriedStakes(Task storage t, uint256 taskId, uint256 round) private returns (uint256 unpaid) {
        uint256 total = t.carry;
        if (total == 0) return 0;
        t.carry = 0;
        uint256 count = t.trainerCount;
        uint256 holders = 0;
        for (uint256 i = 1; i <= count; ++i) {
            if (_holdsPaidStake(taskId, _trainerAt[taskId][i])) ++holders;
        }
        if (holders == 0) return total;
        uint256 paidSoFar = 0;
        uint256 j = 0;
        for (uint256 i = 1; j < holders; ++i) {
            address trainer = _trainerAt[taskId][i];
            if (!_holdsPaidStake(taskId, trainer)) continue;
            ++j;
            uint256 amount = (total * j) / holders - paidSoFar;
            if (amount == 0) continue;
            paidSoFar += amount;
            _seats[taskId][trainer].earned += uint128(amount);
            emit TrainerCredited(taskId, round, trainer, amount);
        }
        t.credited += uint128(total);
        return 0;
    }

    function _holdsPaidStake(uint256 taskId, address trainer) private view returns (bool) {
        return trainer != address(0) && _seats[taskId][trainer].paid && _stakes[taskId][trainer] != 0;
    }

    /// @dev Credit `total` to the round's n revealed updates (join order) by cumulative rounding: the
    /// j-th gets `floor(total * W_j / W) - floor(total * W_{j-1} / W)` where W_j is the sum of the first
    /// j weights (`bps`, or 1 each when `bps` is empty) and W their sum (BPS, or n). The amounts sum to
    /// `total` exactly, so no remainder is left over for anyone but the paid trainers. The n updates are
    /// the revealed ones, or for an equal split (the fallback) the ones proved available.
    function _credit(Task storage t, uint256 taskId, uint256 round, uint256 total, uint16[] memory bps, uint256 n)
        private
        returns (uint256 paidSoFar)
    {
        bool equal = bps.length == 0;
        uint256 whole = equal ? n : BPS;
        uint256 cum = 0;
        uint256 j = 0;
        for (uint256 i = 1; j < n; ++i) {
            address trainer = _trainerAt[taskId][i];
            Seat storage s = _seats[taskId][trainer];
            if ((equal ? s.availableTag : s.revealedTag) != round + 1) continue;
            if (!equal && bps[j] == 0) {
                ++j;
                continue;
            }
            cum += equal ? 1 : bps[j];
            ++j;
            // every update the round pays counts as paid, even one whose share of a tiny pool rounds to 0 wei
            if (!s.paid) s.paid = true;
            // total < 2**128 and cum <= 10_000 (or n <= 256): the product cannot overflow.
            uint256 amount = (total * cum) / whole - paidSoFar;
            if (amount == 0) continue;
            paidSoFar += amount;
            s.earned += uint128(amount);
            emit TrainerCredited(taskId, round, trainer, amount);
        }
        t.credited += uint128(paidSoFar);
    }

    /// @dev Pools as equal as integers allow: pool(r) = floor(reward*(r+1)/rounds) - floor(reward*r/rounds),
    /// which add up to exactly the reward (the sum telescopes).
    function _roundPool(Task storage t, uint256 round) private view returns (uint256) {
        uint256 reward = t.reward;
        uint256 rounds = t.rounds;
        return (reward * (round + 1)) / rounds - (reward * round) / rounds;
    }

    function _settle(
        Task storage t,
        uint256 taskId,
        uint256 round,
        uint8 mode,
        uint256 credited,
        uint256 refund,
        Result memory res
    ) private {
        t.escrow -= uint128(_roundPool(t, round));
        if (refund != 0) t.refunded += uint128(refund);
        uint32 next = uint32(round + 1);
        if (next >= t.rounds) {
            // the task ends: pools nobody earned go back to the owner; lost stakes to the paid trainers holding one
            uint256 creditedBefore = t.credited;
            uint256 back = uint256(t.carryPool) + _payCarriedStakes(t, taskId, round);
            credited += t.credited - creditedBefore;
            if (back != 0) {
                t.carryPool = 0;
                t.refunded += uint128(back);
                refund += back;
            }
        }
        emit RoundSettled(
            taskId, round, mode, credited, refund, t.submissionsDigest, res.modelCid, res.receiptCid, res.seed
        );
        t.currentRound = next;
        if (next >= t.rounds) emit TaskFinished(taskId);
    }

    /// @dev A mask with a bit for each of the n revealed updates.
    function _allRevealed(uint256 n) private pure returns (uint256) {
        return n >= 256 ? type(uint256).max : (uint256(1) << n) - 1;
    }

    function _noResult() private pure returns (Result memory) {
        return Result(bytes32(0), bytes32(0), bytes32(0), 0);
    }

    function _pay(address token, address payable to, uint256 amount) private {
        if (token == address(0)) {
            Address.sendValue(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }
}
