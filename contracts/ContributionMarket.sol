// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IRoundVerifier} from "./IRoundVerifier.sol";

/// @title ContributionMarket
/// @notice Escrow for collaborative training tasks (Proof-of-Contribution design).
/// An owner escrows a reward split into equal per-round pools. Joined trainers commit
/// the CID of each round's update; the task's aggregator posts the round result with
/// basis points per submitter; the contract credits `pool * bps / 10_000` (rounded down,
/// remainder to the owner) to pull-payment balances. If the aggregator misses its
/// deadline anyone may settle the round by an equal split among its submitters; a round
/// nobody submitted to is refunded to the owner. No path leaves funds locked.
/// @dev CIDs are stored as the 32-byte sha2-256 digest of a CIDv1 raw CID.
/// Update CIDs and commitments live in events; the contract keeps a running keccak
/// digest over them, so readers can check the event data they use.
contract ContributionMarket is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Basis points in a whole round pool.
    uint256 public constant BPS = 10_000;
    /// @notice Most trainers a task can admit (one bitmap word per round).
    uint256 public constant MAX_TRAINERS = 256;
    /// @notice Most rounds a task can have.
    uint256 public constant MAX_ROUNDS = 10_000;

    struct TaskParams {
        bytes32 specCid;
        bytes32 validationCommitment;
        address aggregator;
        address verifier;
        uint32 rounds;
        uint32 submitWindow;
        uint32 resultWindow;
        uint32 maxTrainers;
    }

    struct Task {
        address owner;
        uint64 createdBlock;
        address aggregator;
        uint32 rounds;
        uint32 currentRound;
        address token;
        uint32 submitWindow;
        uint32 resultWindow;
        uint32 maxTrainers;
        address verifier;
        uint64 roundOpenedAt;
        uint32 trainerCount;
        uint128 reward;
        uint128 escrow;
        uint128 credited;
        uint128 refunded;
        bytes32 specCid;
        bytes32 validationCommitment;
    }

    struct RoundRecord {
        bytes32 submissionsDigest;
        uint256 submittedMask;
        bytes32 modelCid;
        bytes32 receiptCid;
        uint8 settlement; // 0 open, 1 result, 2 fallback split, 3 refunded (no submitters)
    }

    uint256 private _taskCount;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => mapping(address trainer => uint256 indexPlusOne)) private _trainerIndex;
    mapping(uint256 taskId => mapping(uint256 round => RoundRecord)) private _rounds;
    mapping(uint256 taskId => mapping(uint256 round => address[])) private _submitters;
    mapping(address token => mapping(address account => uint256)) private _owed;

    /// @notice A task was created and its reward escrowed.
    event TaskCreated(
        uint256 indexed taskId,
        address indexed owner,
        address indexed aggregator,
        address token,
        uint256 reward,
        uint32 rounds,
        bytes32 specCid
    );
    /// @notice A trainer joined a task.
    event TrainerJoined(uint256 indexed taskId, address indexed trainer);
    /// @notice A trainer committed its update for a round.
    event UpdateSubmitted(
        uint256 indexed taskId, uint256 indexed round, address indexed trainer, bytes32 cid, bytes32 commitment
    );
    /// @notice The aggregator posted a verified round result.
    event ResultPosted(uint256 indexed taskId, uint256 indexed round, bytes32 modelCid, bytes32 receiptCid);
    /// @notice A trainer was credited for a round.
    event TrainerCredited(uint256 indexed taskId, uint256 indexed round, address indexed trainer, uint256 amount);
    /// @notice A round was settled; `mode` 1 result, 2 fallback equal split, 3 refund (nobody submitted).
    event RoundSettled(uint256 indexed taskId, uint256 indexed round, uint8 mode, uint256 credited, uint256 refunded);
    /// @notice The owner reclaimed every pool nobody can earn any more.
    event TaskReclaimed(uint256 indexed taskId, uint256 amount);
    /// @notice Every round of the task is settled.
    event TaskFinished(uint256 indexed taskId);
    /// @notice An account withdrew what it was owed.
    event Withdrawn(address indexed account, address indexed token, uint256 amount);

    error MarketUnknownTask(uint256 taskId);
    error MarketZeroAggregator();
    error MarketBadRounds(uint256 rounds);
    error MarketBadWindows();
    error MarketBadMaxTrainers(uint256 maxTrainers);
    error MarketRewardTooLarge(uint256 reward);
    error MarketWrongValue(uint256 expected, uint256 sent);
    error MarketZeroReward();
    error MarketTaskFinished(uint256 taskId);
    error MarketRoleConflict(address account);
    error MarketAlreadyJoined(address trainer);
    error MarketTaskFull(uint256 maxTrainers);
    error MarketNotJoined(address trainer);
    error MarketWrongRound(uint256 expected, uint256 given);
    error MarketSubmissionClosed(uint256 deadline);
    error MarketAlreadySubmitted(address trainer);
    error MarketZeroCid();
    error MarketNotAggregator(address caller);
    error MarketNotOwner(address caller);
    error MarketSubmissionsOpen(uint256 deadline);
    error MarketResultWindowClosed(uint256 deadline);
    error MarketResultWindowOpen(uint256 deadline);
    error MarketWrongLength(uint256 expected, uint256 given);
    error MarketBadBasisPoints(uint256 sum);
    error MarketInvalidProof();
    error MarketRoundHasSubmissions(uint256 round);
    error MarketNothingToWithdraw();

    // ------------------------------------------------------------------ owner

    /// @notice Create a task and escrow its reward: ETH (`token` zero, `amount` == msg.value)
    /// or an ERC-20 (`amount` pulled with transferFrom; what actually arrived is escrowed).
    /// @return taskId the new task's id (starting at 1)
    function createTask(TaskParams calldata p, address token, uint256 amount)
        external
        payable
        nonReentrant
        returns (uint256 taskId)
    {
        if (p.aggregator == address(0)) revert MarketZeroAggregator();
        if (p.aggregator == msg.sender) revert MarketRoleConflict(msg.sender);
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert MarketBadRounds(p.rounds);
        if (p.submitWindow == 0 || p.resultWindow == 0) revert MarketBadWindows();
        if (p.maxTrainers == 0 || p.maxTrainers > MAX_TRAINERS) revert MarketBadMaxTrainers(p.maxTrainers);

        uint256 received;
        if (token == address(0)) {
            if (msg.value != amount) revert MarketWrongValue(amount, msg.value);
            received = msg.value;
        } else {
            if (msg.value != 0) revert MarketWrongValue(0, msg.value);
            uint256 before = IERC20(token).balanceOf(address(this));
            IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
            received = IERC20(token).balanceOf(address(this)) - before;
        }
        if (received == 0) revert MarketZeroReward();
        if (received > type(uint128).max) revert MarketRewardTooLarge(received);

        taskId = ++_taskCount;
        Task storage t = _tasks[taskId];
        t.owner = msg.sender;
        t.createdBlock = uint64(block.number);
        t.aggregator = p.aggregator;
        t.rounds = p.rounds;
        t.token = token;
        t.submitWindow = p.submitWindow;
        t.resultWindow = p.resultWindow;
        t.maxTrainers = p.maxTrainers;
        t.verifier = p.verifier;
        t.roundOpenedAt = uint64(block.timestamp);
        t.reward = uint128(received);
        t.escrow = uint128(received);
        t.specCid = p.specCid;
        t.validationCommitment = p.validationCommitment;
        emit TaskCreated(taskId, msg.sender, p.aggregator, token, received, p.rounds, p.specCid);
    }

    /// @notice The owner takes back every remaining pool when the current round has no
    /// submission and its submission window has closed (nobody is training any more).
    function reclaimUnused(uint256 taskId) external nonReentrant {
        Task storage t = _liveTask(taskId);
        if (msg.sender != t.owner) revert MarketNotOwner(msg.sender);
        uint256 round = t.currentRound;
        uint256 deadline = _submitDeadline(t);
        if (block.timestamp < deadline) revert MarketSubmissionsOpen(deadline);
        if (_submitters[taskId][round].length != 0) revert MarketRoundHasSubmissions(round);

        uint256 amount = t.escrow;
        t.escrow = 0;
        t.refunded += uint128(amount);
        t.currentRound = t.rounds;
        _owed[t.token][t.owner] += amount;
        emit TaskReclaimed(taskId, amount);
        emit TaskFinished(taskId);
    }

    // ---------------------------------------------------------------- trainer

    /// @notice Join a task as a trainer (not as its owner or aggregator).
    function join(uint256 taskId) external {
        Task storage t = _liveTask(taskId);
        if (msg.sender == t.owner || msg.sender == t.aggregator) revert MarketRoleConflict(msg.sender);
        if (_trainerIndex[taskId][msg.sender] != 0) revert MarketAlreadyJoined(msg.sender);
        if (t.trainerCount >= t.maxTrainers) revert MarketTaskFull(t.maxTrainers);
        uint32 index = ++t.trainerCount;
        _trainerIndex[taskId][msg.sender] = index;
        emit TrainerJoined(taskId, msg.sender);
    }

    /// @notice Commit this round's update: the CID's sha2-256 digest and a commitment to its sketch.
    function submitUpdate(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment) external {
        Task storage t = _liveTask(taskId);
        uint256 index = _trainerIndex[taskId][msg.sender];
        if (index == 0) revert MarketNotJoined(msg.sender);
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        uint256 deadline = _submitDeadline(t);
        if (block.timestamp >= deadline) revert MarketSubmissionClosed(deadline);
        if (cid == bytes32(0)) revert MarketZeroCid();
        RoundRecord storage r = _rounds[taskId][round];
        uint256 bit = 1 << (index - 1);
        if (r.submittedMask & bit != 0) revert MarketAlreadySubmitted(msg.sender);

        r.submittedMask |= bit;
        r.submissionsDigest = keccak256(abi.encode(r.submissionsDigest, msg.sender, cid, commitment));
        _submitters[taskId][round].push(msg.sender);
        emit UpdateSubmitted(taskId, round, msg.sender, cid, commitment);
    }

    /// @notice Withdraw everything owed to the caller in `token` (zero address for ETH).
    function withdraw(address token) external nonReentrant {
        uint256 amount = _owed[token][msg.sender];
        if (amount == 0) revert MarketNothingToWithdraw();
        _owed[token][msg.sender] = 0;
        emit Withdrawn(msg.sender, token, amount);
        if (token == address(0)) {
            Address.sendValue(payable(msg.sender), amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }

    // ------------------------------------------------------------- aggregator

    /// @notice Post the result of the current round and credit every submitter.
    /// @dev Allowed once submissions are closed (deadline passed, or every joined trainer
    /// submitted) and before the result deadline. `bps` follows submission order and sums
    /// to 10,000, or to 0 when no update was acceptable (the pool is then refunded).
    function postResult(
        uint256 taskId,
        uint256 round,
        bytes32 modelCid,
        bytes32 receiptCid,
        uint16[] calldata bps,
        bytes calldata proof
    ) external nonReentrant {
        Task storage t = _liveTask(taskId);
        if (msg.sender != t.aggregator) revert MarketNotAggregator(msg.sender);
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        _checkResultWindow(t, _submitters[taskId][round].length);
        if (modelCid == bytes32(0) || receiptCid == bytes32(0)) revert MarketZeroCid();

        RoundRecord storage r = _rounds[taskId][round];
        if (t.verifier != address(0)) {
            bool ok = IRoundVerifier(t.verifier).verifyRound(
                taskId, round, r.submissionsDigest, modelCid, receiptCid, bps, proof
            );
            if (!ok) revert MarketInvalidProof();
        }
        (uint256 pool, uint256 credited) = _creditByBps(t, taskId, round, bps);
        r.modelCid = modelCid;
        r.receiptCid = receiptCid;
        emit ResultPosted(taskId, round, modelCid, receiptCid);
        _settle(t, taskId, r, round, 1, pool, credited);
    }

    // --------------------------------------------------------------- liveness

    /// @notice After the result deadline of the current round, anyone may settle it:
    /// an equal split among its submitters, or a refund to the owner if nobody submitted.
    function settleWithoutResult(uint256 taskId) external nonReentrant {
        Task storage t = _liveTask(taskId);
        uint256 round = t.currentRound;
        uint256 resultDeadline = _submitDeadline(t) + t.resultWindow;
        if (block.timestamp < resultDeadline) revert MarketResultWindowOpen(resultDeadline);

        address[] storage subs = _submitters[taskId][round];
        uint256 n = subs.length;
        uint256 pool = _roundPool(t, round);
        uint256 credited;
        if (n != 0) {
            uint256 share = pool / n;
            if (share != 0) {
                address token = t.token;
                for (uint256 i = 0; i < n; ++i) {
                    _owed[token][subs[i]] += share;
                    emit TrainerCredited(taskId, round, subs[i], share);
                }
                credited = share * n;
            }
        }
        _settle(t, taskId, _rounds[taskId][round], round, n != 0 ? 2 : 3, pool, credited);
    }

    // ------------------------------------------------------------------ views

    /// @notice Number of tasks created so far (ids run from 1 to this).
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @notice Everything stored about a task.
    function getTask(uint256 taskId) external view returns (Task memory) {
        return _existingTask(taskId);
    }

    /// @notice Submitters of a round, in submission order.
    function getSubmitters(uint256 taskId, uint256 round) external view returns (address[] memory) {
        _existingTask(taskId);
        return _submitters[taskId][round];
    }

    /// @notice A round's record (digest of submissions, result CIDs, how it was settled).
    function getRound(uint256 taskId, uint256 round) external view returns (RoundRecord memory) {
        _existingTask(taskId);
        return _rounds[taskId][round];
    }

    /// @notice Whether `trainer` has joined `taskId`.
    function isTrainer(uint256 taskId, address trainer) external view returns (bool) {
        return _trainerIndex[taskId][trainer] != 0;
    }

    /// @notice Deadlines of the current round: submissions close, then the result window closes.
    function deadlines(uint256 taskId) external view returns (uint256 submitDeadline, uint256 resultDeadline) {
        Task storage t = _existingTask(taskId);
        submitDeadline = _submitDeadline(t);
        resultDeadline = submitDeadline + t.resultWindow;
    }

    /// @notice The pool of `round` of `taskId`.
    function roundPool(uint256 taskId, uint256 round) external view returns (uint256) {
        Task storage t = _existingTask(taskId);
        if (round >= t.rounds) revert MarketWrongRound(t.rounds - 1, round);
        return _roundPool(t, round);
    }

    /// @notice What `account` can withdraw in `token` (zero address for ETH).
    function owed(address token, address account) external view returns (uint256) {
        return _owed[token][account];
    }

    // --------------------------------------------------------------- internal

    function _existingTask(uint256 taskId) private view returns (Task storage t) {
        t = _tasks[taskId];
        if (t.owner == address(0)) revert MarketUnknownTask(taskId);
    }

    function _liveTask(uint256 taskId) private view returns (Task storage t) {
        t = _existingTask(taskId);
        if (t.currentRound >= t.rounds) revert MarketTaskFinished(taskId);
    }

    function _submitDeadline(Task storage t) private view returns (uint256) {
        return uint256(t.roundOpenedAt) + t.submitWindow;
    }

    /// @dev Equal pools; the last round also takes the division remainder, so the pools add up to the reward.
    function _roundPool(Task storage t, uint256 round) private view returns (uint256) {
        uint256 base = uint256(t.reward) / t.rounds;
        if (round + 1 == t.rounds) return uint256(t.reward) - base * (t.rounds - 1);
        return base;
    }

    /// @dev Submissions are closed (deadline passed, or every joined trainer submitted) and
    /// the result window is still open.
    function _checkResultWindow(Task storage t, uint256 submitted) private view {
        uint256 submitDeadline = _submitDeadline(t);
        if (block.timestamp < submitDeadline && (submitted == 0 || submitted < t.trainerCount)) {
            revert MarketSubmissionsOpen(submitDeadline);
        }
        uint256 resultDeadline = submitDeadline + t.resultWindow;
        if (block.timestamp >= resultDeadline) revert MarketResultWindowClosed(resultDeadline);
    }

    /// @dev Credit `pool * bps[i] / BPS` (rounded down) to the i-th submitter; `bps` must have one
    /// entry per submitter and sum to BPS, or to 0 when no update was acceptable.
    function _creditByBps(Task storage t, uint256 taskId, uint256 round, uint16[] calldata bps)
        private
        returns (uint256 pool, uint256 credited)
    {
        address[] storage subs = _submitters[taskId][round];
        uint256 n = subs.length;
        if (bps.length != n) revert MarketWrongLength(n, bps.length);
        uint256 sum;
        for (uint256 i = 0; i < n; ++i) {
            sum += bps[i];
        }
        if (sum != BPS && sum != 0) revert MarketBadBasisPoints(sum);
        pool = _roundPool(t, round);
        address token = t.token;
        for (uint256 i = 0; i < n; ++i) {
            // pool < 2**128 and bps[i] <= 10_000, so the product cannot overflow.
            uint256 amount = (pool * bps[i]) / BPS;
            if (amount != 0) {
                address trainer = subs[i];
                _owed[token][trainer] += amount;
                credited += amount;
                emit TrainerCredited(taskId, round, trainer, amount);
            }
        }
    }

    function _settle(
        Task storage t,
        uint256 taskId,
        RoundRecord storage r,
        uint256 round,
        uint8 mode,
        uint256 pool,
        uint256 credited
    ) private {
        // credited <= pool: every share is rounded down and the shares sum to at most the pool.
        uint256 refund = pool - credited;
        r.settlement = mode;
        t.escrow -= uint128(pool);
        t.credited += uint128(credited);
        t.refunded += uint128(refund);
        if (refund != 0) _owed[t.token][t.owner] += refund;
        emit RoundSettled(taskId, round, mode, credited, refund);
        uint32 next = uint32(round + 1);
        t.currentRound = next;
        t.roundOpenedAt = uint64(block.timestamp);
        if (next == t.rounds) emit TaskFinished(taskId);
    }
}
